rule build_tokenizer:
    output:
        "models/tokenizer/tokenizer.json",
    log:
        "logs/build_tokenizer.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=config["tokenizer"],
    script:
        "../scripts/build_tokenizer.py"


rule caption:
    input:
        "data/clean/{source}/{shard}.parquet",
    output:
        "data/captions/{source}/{shard}.parquet",
    log:
        "logs/caption/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    params:
        model=config["models"]["caption"],
        seed=SEED,
    script:
        "../scripts/caption.py"


rule trace:
    input:
        "data/clean/{source}/{shard}.parquet",
    output:
        "data/traces/{source}/{shard}.parquet",
    log:
        "logs/trace/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    params:
        model=config["models"]["trace"],
        n=config["annotate"]["traces_per_sample"],
        seed=SEED,
    script:
        "../scripts/trace.py"


if EXPAND:

    rule expand:
        input:
            records="data/clean/{source}/{shard}.parquet",
            traces="data/traces/{source}/{shard}.parquet",
        output:
            "data/expanded/{source}/{shard}.parquet",
        log:
            "logs/expand/{source}/{shard}.log",
        conda:
            "../envs/vllm.yaml"
        params:
            model=EXPAND,
            spec=EXPAND_SPEC,
            seed=SEED,
        script:
            "../scripts/expand.py"
