from mmfr.evaluate import answer_group
from mmfr.snake import marker_journals, step, write_markers

with step(snakemake) as s:
    model = {**s.params.generation, "model": s.input.model}
    counts = answer_group(list(s.input.benches), list(s.params.specs), marker_journals(s.output.markers), model,
                          s.params.seed)
    write_markers(s.output.markers, counts)
