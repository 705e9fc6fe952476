rule fetch_benchmark:
    output:
        "data/raw/bench/{bench}.parquet",
    params:
        spec=benchmark_spec,
        seed=SEED,
    log:
        "logs/fetch_benchmark/{bench}.log",
    script:
        "../scripts/fetch_benchmark.py"


rule prepare_benchmark:
    input:
        "data/raw/bench/{bench}.parquet",
    output:
        bench="data/bench/{bench}.parquet",
        quarantine="data/bench/{bench}.quarantine.parquet",
    params:
        spec=benchmark_spec,
        images=config["images"],
    log:
        "logs/prepare_benchmark/{bench}.log",
    script:
        "../scripts/prepare_benchmark.py"


rule evaluate:
    input:
        model=eval_model_dir,
        bench="data/bench/{bench}.parquet",
    output:
        "results/scores/{model}/{bench}.parquet",
    params:
        generation=config["evaluate"]["generation"],
        seed=SEED,
    log:
        "logs/evaluate/{model}/{bench}.log",
    threads: 2
    script:
        "../scripts/evaluate.py"


rule score_table:
    input:
        unpack(score_inputs),
    output:
        "results/scores/{subset}/{size}/scores.tsv",
    params:
        paper=paper_scores,
    log:
        "logs/score_table/{subset}/{size}.log",
    script:
        "../scripts/score_table.py"
