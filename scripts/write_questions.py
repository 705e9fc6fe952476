from mmfr.questions import write_questions
from mmfr.snake import journal, step

with step(snakemake) as s:
    spec = s.params.spec
    write_questions(s.input.data, spec, int(s.wildcards.part), spec.get("question_jobs", 1), s.output[0], s.params.model,
                    s.params.seed, journal(s))
