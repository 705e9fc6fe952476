rule base_model:
    output:
        directory("models/base/{size}"),
    params:
        spec=student_spec,
        seed=SEED,
    log:
        "logs/base_model/{size}.log",
    script:
        "../scripts/base_model.py"


rule sft:
    input:
        base="models/base/{size}",
        data="data/subsets/{subset}",
    output:
        directory("models/{subset}/{size}/sft"),
    params:
        cfg=config["train"]["sft"],
        seed=SEED,
    log:
        "logs/sft/{subset}/{size}.log",
    threads: 2
    resources:
        mem_mb=16000,
    script:
        "../scripts/sft.py"


rule gspo:
    input:
        sft="models/{subset}/{size}/sft",
        data=f"data/subsets/{RL['name']}",
    output:
        directory("models/{subset}/{size}/gspo"),
    params:
        cfg=config["train"]["gspo"],
        seed=SEED,
    log:
        "logs/gspo/{subset}/{size}.log",
    threads: 2
    resources:
        mem_mb=16000,
    script:
        "../scripts/gspo.py"
