from mmfr.annotate import caption_shard
from mmfr.snake import journal, step

with step(snakemake) as s:
    caption_shard(s.input[0], s.output[0], s.params.model, s.params.seed, journal(s))
