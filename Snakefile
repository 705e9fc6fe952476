# mmfr: public multimodal data -> reasoning datasets -> trained VLMs -> benchmark scores.
# The default config is the full MMFineReason recipe; recipes/*.yaml overlay it
# (e.g. `snakemake all --configfile config.yaml recipes/demo.yaml`; targets go before
# --configfile, which takes every word after it as a config file).
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from mmfr.config import check_schema

min_version("9.0")


configfile: "config.yaml"


# Snakemake's validate checks the config and fills in the defaults; when it finds an error, every
# error is named by its key (verify.min_cot_wrds) before any job runs, not the whole schema
try:
    validate(config, "schemas/config.schema.yaml")
    invalid = None
except WorkflowError as e:
    invalid = e
if invalid:
    check_schema(config, f"{workflow.basedir}/schemas/config.schema.yaml")
    raise invalid


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/sources.smk"
include: "rules/annotate.smk"
include: "rules/verify.smk"
include: "rules/select.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/summary.smk"


# it only names a source's shards: not worth a cluster job
localrules:
    list_shards,


# Each target takes every persistent artifact of its graph (common.smk), so a missing one is rebuilt.
# The lists are input functions: thousands of paths each, built only for the target asked for (as
# static lists, every parse of the workflow, every cluster job's included, would build them all).
rule all:
    input:
        lambda wildcards: all_artifacts(),
        "results/summary.duckdb",
        rules.report_figures.output,


rule datasets:
    input:
        lambda wildcards: data_artifacts() + all_subset_dirs(),


for _subset, _size in SCORE_TARGETS:

    rule:
        name:
            f"{_subset}_{_size}_scores"
        input:
            score_target(_subset, _size),


apply_cluster(workflow.rules)
