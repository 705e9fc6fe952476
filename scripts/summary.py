from mmfr.snake import step
from mmfr.summary import build_summary

with step(snakemake) as s:
    build_summary({k: list(v) for k, v in s.input.items()}, s.output[0], s.params.sources)
