from mmfr.snake import step
from mmfr.sources import ImagePolicy, standardise

with step(snakemake) as s:
    standardise(s.input[0], s.params.source, s.params.license, list(s.output.shards),
                s.output.quarantine, ImagePolicy(**s.params.images))
