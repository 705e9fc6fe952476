rule build_tokenizer:
    output:
        "models/tokenizer/tokenizer.json",
    log:
        "logs/build_tokenizer.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=config["tokenizer"],
    script:
        "../scripts/build_tokenizer.py"


if RELEASE:

    rule release_index:
        input:
            release_folder(),
        output:
            RELEASE_INDEX,
        log:
            "logs/release_index.log",
        conda:
            "../envs/data.yaml"
        params:
            release=RELEASE["model"],
            revision=RELEASE["revision"],
        script:
            "../scripts/release_index.py"


# With grouping.caption_rows, one GPU job per group of shards captions them all with one load
# of the teacher; each shard's caption job then finds its captions in the journal.
for _group, (_source, _shards) in GROUPS.get("caption", {}).items():

    rule:
        name:
            f"caption_generate_{_group}"
        input:
            records=shard_list("clean", _source),
            release=release_index("caption"),
        output:
            markers=temp(group_markers("caption", _source, _shards)),
        log:
            f"logs/caption_generate/{_group}.log",
        conda:
            "../envs/vllm.yaml"
        params:
            model=teacher("caption"),
            seed=SEED,
        script:
            "../scripts/caption_generate.py"


rule caption:
    input:
        rules.clean.output.records,
        after=generated("caption"),
        release=release_index("caption"),
    output:
        "data/captions/{source}/{shard}.parquet",
    log:
        "logs/caption/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    params:
        model=teacher("caption"),
        seed=SEED,
    script:
        "../scripts/caption.py"


rule trace:
    input:
        rules.clean.output.records,
        release=release_index("trace"),
    output:
        "data/traces/{source}/{shard}.parquet",
    log:
        "logs/trace/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    params:
        model=teacher("trace"),
        n=config["annotate"]["traces_per_sample"],
        regenerate=regenerate_spec(),
        seed=SEED,
    script:
        "../scripts/trace.py"


if EXPAND:

    rule expand:
        input:
            records=rules.clean.output.records,
            traces=rules.trace.output[0],
        output:
            "data/expanded/{source}/{shard}.parquet",
        log:
            "logs/expand/{source}/{shard}.log",
        conda:
            "../envs/vllm.yaml"
        params:
            model=EXPAND,
            spec=EXPAND_SPEC,
            seed=SEED,
        script:
            "../scripts/expand.py"
