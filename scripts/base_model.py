from mmfr.snake import step
from mmfr.models import prepare_base

with step(snakemake) as s:
    prepare_base(s.params.spec, s.output[0], s.params.seed)
