from mmfr.snake import group_journals, step, write_markers
from mmfr.verify import judge_group

with step(snakemake) as s:
    counts = judge_group(list(s.input.records), list(s.input.traces), group_journals(s.params.outputs),
                         s.params.checks, s.params.judge, s.params.seed, s.params.check_answer)
    write_markers(s.output, counts)
