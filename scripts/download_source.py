from mmfr.snake import step
from mmfr.sources import download

with step(snakemake) as s:
    download(s.params.spec, s.output.data, s.output.manifest, s.output.images, s.params.seed)
