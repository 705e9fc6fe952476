# With grouping.judge_rows, one GPU job per group of shards asks the judge about every trace the
# rule checks call wrong, with one load of the judge; each shard's verify job then loads none.
for _group, (_source, _shards) in GROUPS.get("judge", {}).items():

    rule:
        name:
            f"judge_generate_{_group}"
        input:
            records=shard_list("clean", _source),
            traces=shard_list(TRACE_STAGE, _source),
        output:
            markers=temp(group_markers("judge", _source, _shards)),
        log:
            f"logs/judge_generate/{_group}.log",
        conda:
            "../envs/vllm.yaml"
        params:
            checks=config["verify"],
            judge=config["models"].get("judge"),
            seed=SEED,
            check_answer=SOURCES[_source]["check_answer"],
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
