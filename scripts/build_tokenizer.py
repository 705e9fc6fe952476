from mmfr.checkpoints import prepare_tokenizer
from mmfr.snake import step

with step(snakemake) as s:
    prepare_tokenizer(s.params.spec, s.output[0])
