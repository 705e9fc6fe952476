from mmfr.snake import step
from mmfr.subsets import build

with step(snakemake) as s:
    inputs = {k: list(s.input[k]) for k in ("records", "captions", "verified", "passrates")}
    build(inputs, s.output[0], s.params.spec, s.params.rl, s.params.seed)
