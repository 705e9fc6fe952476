from mmfr.evaluate import evaluate
from mmfr.snake import journal, step

with step(snakemake) as s:
    model = {**s.params.generation, "model": s.input.model}
    evaluate(s.input.bench, s.params.spec, s.output[0], model, s.params.seed, journal(s), s.params.score_truncated,
             s.params.judge)
