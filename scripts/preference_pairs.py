from mmfr.pairs import build
from mmfr.snake import step

with step(snakemake) as s:
    build(s.input.subset, list(s.input.verified), s.output[0], s.params.spec, s.params.seed)
