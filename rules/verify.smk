# With grouping.judge_rows, one GPU job per group of shards asks the judge about every trace the
# rule checks call wrong, with one load of the judge; each shard's verify job then loads none.
if grouped("judge"):

    rule judge_generate:
        input:
            records=group_inputs("judge", "data/clean/{source}/{shard}.parquet"),
            traces=group_inputs(
                "judge", f"data/{TRACE_STAGE}/{{source}}/{{shard}}.parquet"
            ),
        output:
            temp(group_marker("judge", "{source}", "{first}")),
        log:
            "logs/judge_generate/{source}_{first}.log",
        conda:
            "../envs/vllm.yaml"
        params:
            outputs=group_outputs("judge"),
            checks=config["verify"],
            judge=config["models"].get("judge"),
            seed=SEED,
            check_answer=lambda wildcards: SOURCES[wildcards.source]["check_answer"],
        script:
            "../scripts/judge_generate.py"


rule verify:
    input:
        records=rules.clean.output.records,
        traces=verify_traces,
        captions=rules.caption.output[0],
        tokenizer=rules.build_tokenizer.output[0],
        after=generated("judge"),
    output:
        "data/verified/{source}/{shard}.parquet",
    log:
        "logs/verify/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    threads: 8  # the tokenizer's threads (profiles/slurm gives the job 8 cores); fewer where a run has fewer
    params:
        checks=config["verify"],
        judge=config["models"].get("judge"),
        seed=SEED,
        check_answer=lambda wildcards: SOURCES[wildcards.source]["check_answer"],
    script:
        "../scripts/verify.py"
