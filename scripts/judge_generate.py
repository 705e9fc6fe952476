from mmfr.snake import group_journals, marker_outputs, step, write_markers
from mmfr.verify import judge_group

with step(snakemake) as s:
    journals = group_journals(marker_outputs(s.output.markers))
    counts = judge_group(list(s.input.records), list(s.input.traces), journals, s.params.checks, s.params.judge,
                         s.params.seed, s.params.check_answer)
    write_markers(s.output.markers, counts)
