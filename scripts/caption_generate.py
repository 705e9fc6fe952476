from mmfr.annotate import caption_group
from mmfr.snake import group_journals, marker_outputs, of_markers, step, write_markers

with step(snakemake) as s:
    journals = group_journals(marker_outputs(s.output.markers))
    counts = caption_group(of_markers(s.input.shards, s.output.markers), journals, s.params.model, s.params.seed)
    write_markers(s.output.markers, counts)
