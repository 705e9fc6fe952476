from mmfr.benchmarks import read_record
from mmfr.snake import step
from mmfr.sources import ImagePolicy, standardise

with step(snakemake) as s:
    standardise(s.input.data, s.params.spec, [s.output.bench], s.output.dropped, None,
                ImagePolicy(**s.params.images), images_dir=s.input.images, adapt=read_record)
