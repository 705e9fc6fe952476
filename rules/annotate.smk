rule build_tokenizer:
    output:
        "models/tokenizer/tokenizer.json",
    params:
        spec=config["tokenizer"],
    log:
        "logs/build_tokenizer.log",
    script:
        "../scripts/build_tokenizer.py"


rule caption:
    input:
        "data/std/{source}/{shard}.parquet",
    output:
        "data/captions/{source}/{shard}.parquet",
    params:
        model=config["models"]["caption"],
        seed=SEED,
    log:
        "logs/caption/{source}/{shard}.log",
    script:
        "../scripts/caption.py"


rule trace:
    input:
        "data/std/{source}/{shard}.parquet",
    output:
        "data/traces/{source}/{shard}.parquet",
    params:
        model=config["models"]["trace"],
        n=config["annotate"]["traces_per_sample"],
        seed=SEED,
    log:
        "logs/trace/{source}/{shard}.log",
    script:
        "../scripts/trace.py"
