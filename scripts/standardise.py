from mmfr.snake import step
from mmfr.sources import Exclusions, ImagePolicy, standardise

with step(snakemake) as s:
    standardise(s.input.data, s.params.spec, list(s.output.shards), s.output.dropped, s.output.counts,
                ImagePolicy(**s.params.images), Exclusions.from_config(s.params.exclude), s.input.images,
                threads=s.threads, replies=list(s.input.questions) or None)
