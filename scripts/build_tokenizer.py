from mmfr.snake import step
from mmfr.models import prepare_tokenizer

with step(snakemake) as s:
    prepare_tokenizer(s.params.spec, s.output[0])
