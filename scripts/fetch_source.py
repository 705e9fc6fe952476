from mmfr.snake import step
from mmfr.sources import fetch

with step(snakemake) as s:
    fetch(s.params.spec, s.output[0], s.params.seed)
