from mmfr.evaluate import answer_group
from mmfr.snake import group_journals, step, write_markers

with step(snakemake) as s:
    model = {**s.params.generation, "model": s.input.model}
    counts = answer_group(list(s.input.benches), list(s.params.specs), group_journals(s.params.outputs), model,
                          s.params.seed)
    write_markers(s.output, counts)
