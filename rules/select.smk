rule pass_rate:
    input:
        records=rules.clean.output.records,
        verified=rules.verify.output[0],
        model=proxy_model,
    output:
        "data/passrate/{source}/{shard}.parquet",
    log:
        "logs/pass_rate/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    resources:
        mem_mb=8000,
    params:
        model=config["models"]["proxy"],
        k=config["difficulty"]["k"],
        score_truncated=config["difficulty"]["score_truncated"],
        seed=SEED,
    script:
        "../scripts/pass_rate.py"


rule subset:
    input:
        unpack(subset_inputs),
    output:
        directory("data/subsets/{subset}"),
    log:
        "logs/subset/{subset}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        spec=subset_spec,
        rl=RL,
        seed=SEED,
    script:
        "../scripts/subset.py"
