from mmfr.release import build_index
from mmfr.snake import step

with step(snakemake) as s:
    build_index(s.params.release, s.output[0], s.params.revision)
