from mmfr.report import CATEGORIES, PLOTS, TABLES


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
            for name in TABLES
        ],
        csv=[f"results/report/{name}.csv" for name in TABLES],
    log:
        "logs/report_figures.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/report_figures.py"
