from mmfr.clean import generate_group
from mmfr.snake import group_journals, step, write_markers

with step(snakemake) as s:
    counts = generate_group(list(s.params.records), group_journals(s.params.outputs), s.input.drops,
                            s.params.clean, s.params.extract, s.params.seed)
    write_markers(s.output, counts)
