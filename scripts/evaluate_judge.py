from mmfr.evaluate import judge_group
from mmfr.snake import marker_journals, step, write_markers

with step(snakemake) as s:
    model = {**s.params.generation, "model": s.input.model}
    counts = judge_group(list(s.input.benches), list(s.params.specs), marker_journals(s.output.markers), model,
                         s.params.judge, s.params.seed, s.params.score_truncated)
    write_markers(s.output.markers, counts)
