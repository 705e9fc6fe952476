rule download_benchmark:
    output:
        data="data/raw/bench/{bench}.parquet",
        manifest="data/raw/bench/{bench}.manifest.json",
        images=directory("data/raw/bench/{bench}.images"),
    log:
        "logs/download_benchmark/{bench}.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=benchmark_spec,
        seed=SEED,
    script:
        "../scripts/download_source.py"


rule prepare_benchmark:
    input:
        data="data/raw/bench/{bench}.parquet",
        images="data/raw/bench/{bench}.images",
    output:
        bench="data/bench/{bench}.parquet",
        dropped="data/bench/{bench}.dropped.parquet",
    log:
        "logs/prepare_benchmark/{bench}.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=benchmark_spec,
        images=config["images"],
    script:
        "../scripts/prepare_benchmark.py"


rule evaluate:
    input:
        model=eval_model_dir,
        bench="data/bench/{bench}.parquet",
    output:
        "results/scores/{model}/{bench}.parquet",
    log:
        "logs/evaluate/{model}/{bench}.log",
    conda:
        "../envs/vllm.yaml"
    threads: 2
    params:
        generation=config["evaluate"]["generation"],
        score_truncated=config["evaluate"]["score_truncated"],
        seed=SEED,
    script:
        "../scripts/evaluate.py"


rule score_table:
    input:
        unpack(score_inputs),
    output:
        "results/scores/{subset}/{size}/scores.tsv",
    log:
        "logs/score_table/{subset}/{size}.log",
    conda:
        "../envs/data.yaml"
    params:
        paper=paper_scores,
    script:
        "../scripts/score_table.py"
