from mmfr.difficulty import pass_rate_shard
from mmfr.snake import journal, step

with step(snakemake) as s:
    pass_rate_shard(s.input.records, s.input.verified, s.output[0], s.params.model, s.params.k,
                    s.params.seed, journal(s), s.params.score_truncated, s.params.release)
