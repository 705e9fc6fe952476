from mmfr.report import CATEGORIES, PLOTS, TABLES

# the report's tables: the comparison with a release only where one is set (compare.release)
REPORT_TABLES = [t for t in TABLES if COMPARE or not t.startswith("release")]


rule summary:
    input:
        unpack(summary_inputs),
    output:
        "results/summary.duckdb",
    log:
        "logs/summary.log",
    conda:
        "../envs/data.yaml"
    params:
        sources=config["sources"],
    script:
        "../scripts/summary.py"


if COMPARE:

    rule release_compare:
        input:
            unpack(compare_inputs),
        output:
            COMPARE_DB,
        log:
            "logs/release_compare.log",
        conda:
            "../envs/data.yaml"
        params:
            release=COMPARE["release"],
            revision=COMPARE["revision"],
            subsets=COMPARE["subsets"],
            distance=COMPARE["phash_distance"],
        script:
            "../scripts/release_compare.py"


# The tables and plots of `snakemake --report` (see mmfr/report.py); captions in report/
rule report_figures:
    input:
        "results/summary.duckdb",
    output:
        plots=[
            report(
                f"results/report/{name}.svg",
                caption=f"../report/{name}.rst",
                category=CATEGORIES[name],
                labels={"name": name, "type": "plot"},
            )
            for name in PLOTS
        ],
        tables=[
            report(
                f"results/report/{name}.html",
                caption=f"../report/{name}.rst",
                category=CATEGORIES[name],
                labels={"name": name, "type": "table"},
            )
            for name in REPORT_TABLES
        ],
        csv=[f"results/report/{name}.csv" for name in REPORT_TABLES],
    log:
        "logs/report_figures.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/report_figures.py"
