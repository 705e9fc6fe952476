from mmfr.clean import generate_group
from mmfr.snake import marker_journals, step, write_markers

with step(snakemake) as s:
    counts = generate_group(list(s.input.records), marker_journals(s.output.markers), s.input.drops,
                            s.params.clean, s.params.extract, s.params.seed)
    write_markers(s.output.markers, counts)
