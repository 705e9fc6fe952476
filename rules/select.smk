rule pass_rate:
    input:
        records=rules.clean.output.records,
        verified=rules.verify.output[0],
        model=proxy_model,
        release=release_pass_rates(),
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
        release=published_pass_rates(),
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


# DPO's preference pairs: a verified-correct trace of a subset's question against a wrong one
rule preference_pairs:
    input:
        subset=rules.subset.output[0],
        verified=all_shard_paths("verified"),
    output:
        directory("data/pairs/{subset}"),
    log:
        "logs/preference_pairs/{subset}.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=config["selection"]["pairs"],
        seed=SEED,
    script:
        "../scripts/preference_pairs.py"
