from mmfr.evaluate import score_table
from mmfr.snake import step

with step(snakemake) as s:
    items = {stage: list(s.input[stage]) for stage in s.input.keys()}
    score_table(items, s.output[0], s.params.specs, s.params.paper)
