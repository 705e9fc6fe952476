from mmfr.snake import step
from mmfr.train import gspo, subset_files

with step(snakemake) as s:
    gspo(s.input.sft, subset_files(s.input.data), s.output[0], s.params.cfg, s.params.seed)
