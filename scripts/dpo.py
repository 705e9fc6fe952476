from mmfr.snake import step
from mmfr.train import run, subset_files

with step(snakemake) as s:
    run("dpo", s.input.sft, subset_files(s.input.data), s.output[0], s.params.cfg, s.params.seed,
        processes=s.params.processes)
