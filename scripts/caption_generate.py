from mmfr.annotate import caption_group
from mmfr.snake import group_journals, marker_outputs, step, write_markers

with step(snakemake) as s:
    journals = group_journals(marker_outputs(s.output.markers))
    counts = caption_group(list(s.input.shards), journals, s.params.model, s.params.seed)
    write_markers(s.output.markers, counts)
