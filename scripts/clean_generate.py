from mmfr.clean import generate_group
from mmfr.snake import group_journals, marker_outputs, shards_in, step, write_markers

with step(snakemake) as s:
    outputs = marker_outputs(s.output.markers)
    records = shards_in(s.input.std, outputs)  # the same shards of data/std/<source>/
    counts = generate_group(records, group_journals(outputs), s.input.drops, s.params.clean, s.params.extract,
                            s.params.seed)
    write_markers(s.output.markers, counts)
