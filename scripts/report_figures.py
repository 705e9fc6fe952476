from mmfr.report import write_report
from mmfr.snake import step

with step(snakemake) as s:
    write_report(s.input[0], list(s.output))
