import os

from mmfr.snake import step
from mmfr.sources import Exclusions, ImagePolicy, standardise

with step(snakemake) as s:
    os.makedirs(s.output.shards, exist_ok=True)
    shards = [f"{s.output.shards}/{i:05d}.parquet" for i in range(s.params.spec["shards"])]
    standardise(s.input.data, s.params.spec, shards, s.output.dropped, s.output.counts,
                ImagePolicy(**s.params.images), Exclusions.from_config(s.params.exclude), s.input.images,
                threads=s.threads, replies=list(s.input.questions) or None)
