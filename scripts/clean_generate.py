from pathlib import Path

from mmfr.clean import generate_group
from mmfr.snake import group_journals, marker_outputs, step, write_markers

with step(snakemake) as s:
    outputs = marker_outputs(s.output.markers)
    records = [f"{s.input.std}/{Path(o).name}" for o in outputs]  # the same shard of data/std/<source>/
    counts = generate_group(records, group_journals(outputs), s.input.drops, s.params.clean, s.params.extract,
                            s.params.seed)
    write_markers(s.output.markers, counts)
