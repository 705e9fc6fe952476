from mmfr.snake import group_journals, listed_shards, marker_outputs, step, write_markers
from mmfr.verify import judge_group

with step(snakemake) as s:
    outputs = marker_outputs(s.output.markers)
    counts = judge_group(listed_shards(s.input.records, outputs), listed_shards(s.input.traces, outputs),
                         group_journals(outputs), s.params.checks, s.params.judge, s.params.seed,
                         s.params.check_answer)
    write_markers(s.output.markers, counts)
