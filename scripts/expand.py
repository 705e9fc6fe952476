from mmfr.annotate import expand_shard
from mmfr.snake import journal, step

with step(snakemake) as s:
    expand_shard(s.input.records, s.input.traces, s.output[0], s.params.model, s.params.spec, s.params.seed,
                 journal(s))
