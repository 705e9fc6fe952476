from mmfr.checkpoints import prepare_base
from mmfr.snake import step

with step(snakemake) as s:
    prepare_base(s.params.spec, s.output[0], s.params.seed)
