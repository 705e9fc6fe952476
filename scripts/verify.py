from mmfr.snake import journal, step
from mmfr.verify import verify_shard

with step(snakemake) as s:
    verify_shard(s.input.records, s.input.traces, s.input.captions, s.input.tokenizer, s.output[0],
                 s.params.checks, s.params.judge, s.params.seed, journal(s), s.params.check_answer,
                 threads=s.threads)
