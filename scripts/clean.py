from mmfr.clean import clean_shard
from mmfr.snake import journal, step

with step(snakemake) as s:
    clean_shard(s.params.records, s.input.drops, s.output.records, s.output.dropped, s.params.clean,
                s.params.extract, s.params.seed, journal(s))
