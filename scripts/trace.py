from mmfr.annotate import trace_shard
from mmfr.snake import journal, step

with step(snakemake) as s:
    trace_shard(s.input[0], s.output[0], s.params.model, s.params.n, s.params.seed, journal(s), s.params.regenerate)
