rule summary:
    input:
        unpack(summary_inputs),
    output:
        "results/summary.duckdb",
    params:
        sources=config["sources"],
    log:
        "logs/summary.log",
    script:
        "../scripts/summary.py"
