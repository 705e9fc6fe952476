from mmfr.annotate import caption_group
from mmfr.snake import group_journals, listed_shards, marker_outputs, step, write_markers

with step(snakemake) as s:
    outputs = marker_outputs(s.output.markers)
    counts = caption_group(listed_shards(s.input.records, outputs), group_journals(outputs), s.params.model,
                           s.params.seed)
    write_markers(s.output.markers, counts)
