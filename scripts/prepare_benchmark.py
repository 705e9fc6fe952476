from mmfr.snake import step
from mmfr.sources import ImagePolicy, standardise

with step(snakemake) as s:
    spec = s.params.spec
    standardise(s.input[0], spec["name"], spec.get("license", "unknown"), [s.output.bench],
                s.output.quarantine, ImagePolicy(**s.params.images))
