rule base_model:
    output:
        directory("models/base/{size}"),
    log:
        "logs/base_model/{size}.log",
    conda:
        "../envs/train.yaml"
    params:
        spec=student_spec,
        seed=SEED,
    script:
        "../scripts/base_model.py"


rule sft:
    input:
        base=rules.base_model.output[0],
        data=rules.subset.output[0],
    output:
        directory("models/{subset}/{size}/sft"),
    log:
        "logs/sft/{subset}/{size}.log",
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        cfg=config["train"]["sft"],
        processes=max(1, config["train"]["gpus"]),
        seed=SEED,
    script:
        "../scripts/sft.py"


rule gspo:
    input:
        sft=rules.sft.output[0],
        data=f"data/subsets/{RL['name']}",
    output:
        directory("models/{subset}/{size}/gspo"),
    log:
        "logs/gspo/{subset}/{size}.log",
    conda:
        gspo_env()
    threads: 2
    resources:
        mem_mb=16000,
    params:
        cfg=config["train"]["gspo"],
        processes=max(1, config["train"]["gpus"]),
        seed=SEED,
    script:
        "../scripts/gspo.py"


rule dpo:
    input:
        sft=rules.sft.output[0],
        data=rules.preference_pairs.output[0],
    output:
        directory("models/{subset}/{size}/dpo"),
    log:
        "logs/dpo/{subset}/{size}.log",
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        cfg=config["train"]["dpo"],
        processes=max(1, config["train"]["gpus"]),
        seed=SEED,
    script:
        "../scripts/dpo.py"
