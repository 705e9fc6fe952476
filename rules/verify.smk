rule verify:
    input:
        records="data/clean/{source}/{shard}.parquet",
        traces=verify_traces,
        captions="data/captions/{source}/{shard}.parquet",
        tokenizer="models/tokenizer/tokenizer.json",
    output:
        "data/verified/{source}/{shard}.parquet",
    log:
        "logs/verify/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    params:
        checks=config["verify"],
        judge=config["models"].get("judge"),
        seed=SEED,
    script:
        "../scripts/verify.py"
