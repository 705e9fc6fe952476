from mmfr.dedup import DedupConfig, dedup
from mmfr.snake import step

with step(snakemake) as s:
    dedup(list(s.params.records), list(s.input.benchmarks), s.params.priority, DedupConfig(**s.params.dedup),
          s.output.drops, s.output.report)
