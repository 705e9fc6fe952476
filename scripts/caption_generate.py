from mmfr.annotate import caption_group
from mmfr.snake import marker_journals, step, write_markers

with step(snakemake) as s:
    counts = caption_group(list(s.input.shards), marker_journals(s.output.markers), s.params.model, s.params.seed)
    write_markers(s.output.markers, counts)
