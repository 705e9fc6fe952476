# mmfr: public multimodal data -> reasoning datasets -> trained VLMs -> benchmark scores.
# The default config is the full MMFineReason recipe; recipes/*.yaml overlay it
# (e.g. `snakemake --configfile recipes/demo.yaml all`, which `make demo` runs).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/sources.smk"
include: "rules/annotate.smk"
include: "rules/verify.smk"
include: "rules/select.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/summary.smk"


rule all:
    input:
        all_score_tables(),
        "results/summary.duckdb",
        rules.report_figures.output,


rule datasets:
    input:
        all_subset_dirs(),


for _subset, _size in SCORE_TARGETS:

    rule:
        name:
            f"{_subset}_{_size}_scores"
        input:
            score_table(_subset, _size),


apply_cluster(workflow.rules)
