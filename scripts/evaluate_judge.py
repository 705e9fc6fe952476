from mmfr.evaluate import judge_group
from mmfr.snake import group_journals, step, write_markers

with step(snakemake) as s:
    model = {**s.params.generation, "model": s.input.model}
    counts = judge_group(list(s.input.benches), list(s.params.specs), group_journals(s.params.outputs), model,
                         s.params.judge, s.params.seed, s.params.score_truncated)
    write_markers(s.output, counts)
