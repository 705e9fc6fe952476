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
        data=rules.download_benchmark.output.data,
        images=rules.download_benchmark.output.images,
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


# With grouping.evaluate, one GPU job per model answers every benchmark with one load of the
# model; each benchmark's evaluate job then scores the answers from the journal.
if grouped("evaluate"):

    rule evaluate_generate:
        input:
            model=eval_model_dir,
            benches=[f"data/bench/{b}.parquet" for b in BENCHMARKS],
        output:
            temp(answers_marker("{model}")),
        log:
            "logs/evaluate_generate/{model}.log",
        conda:
            "../envs/vllm.yaml"
        threads: 2
        params:
            outputs=answer_outputs,
            specs=list(BENCHMARKS.values()),
            generation=config["evaluate"]["generation"],
            seed=SEED,
        script:
            "../scripts/evaluate_generate.py"


# With evaluate.judge as well, one GPU job per model loads the judge once for the answers of every
# benchmark (after that model's answers are in the journals).
if EVAL_JUDGED:

    rule evaluate_judge:
        input:
            model=eval_model_dir,
            benches=[f"data/bench/{b}.parquet" for b in BENCHMARKS],
            judge=workflow_models(config["evaluate"]["judge"]),
            after=answers_marker("{model}"),
        output:
            temp(answers_marker("{model}", judged=True)),
        log:
            "logs/evaluate_judge/{model}.log",
        conda:
            "../envs/vllm.yaml"
        threads: 2
        params:
            outputs=answer_outputs,
            specs=list(BENCHMARKS.values()),
            generation=config["evaluate"]["generation"],
            judge=config["evaluate"]["judge"],
            score_truncated=config["evaluate"]["score_truncated"],
            seed=SEED,
        script:
            "../scripts/evaluate_judge.py"


rule evaluate:
    input:
        model=eval_model_dir,
        bench=rules.prepare_benchmark.output.bench,
        after=evaluated,
        judge=workflow_models(config["evaluate"].get("judge")),
    output:
        "results/scores/{model}/{bench}.parquet",
    log:
        "logs/evaluate/{model}/{bench}.log",
    conda:
        "../envs/vllm.yaml"
    threads: 2
    params:
        spec=benchmark_spec,
        generation=config["evaluate"]["generation"],
        score_truncated=config["evaluate"]["score_truncated"],
        judge=config["evaluate"].get("judge"),
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
        specs=BENCHMARKS,
        paper=paper_scores,
    script:
        "../scripts/score_table.py"
