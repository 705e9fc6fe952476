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
