rule pass_rate:
    input:
        std="data/std/{source}/{shard}.parquet",
        verified="data/verified/{source}/{shard}.parquet",
        model=proxy_model,
    output:
        "data/passrate/{source}/{shard}.parquet",
    params:
        model=config["models"]["proxy"],
        k=config["difficulty"]["k"],
        seed=SEED,
    log:
        "logs/pass_rate/{source}/{shard}.log",
    resources:
        mem_mb=8000,
    script:
        "../scripts/pass_rate.py"


rule subset:
    input:
        unpack(subset_inputs),
    output:
        directory("data/subsets/{subset}"),
    params:
        spec=subset_spec,
        rl=RL,
        seed=SEED,
    log:
        "logs/subset/{subset}.log",
    resources:
        mem_mb=16000,
    script:
        "../scripts/subset.py"
