from mmfr.annotate import caption_group
from mmfr.snake import group_journals, step, write_markers

with step(snakemake) as s:
    counts = caption_group(list(s.input.shards), group_journals(s.params.outputs), s.params.model, s.params.seed)
    write_markers(s.output, counts)
