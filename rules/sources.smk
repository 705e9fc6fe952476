rule download_source:
    output:
        data="data/raw/{source}/data.parquet",
        manifest="data/raw/{source}/manifest.json",
        images=directory("data/raw/{source}/images"),
    log:
        "logs/download_source/{source}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
    params:
        spec=source_spec,
        seed=SEED,
    script:
        "../scripts/download_source.py"


if QUESTION_SOURCES:

    # Long Grounded Thoughts: a text LLM writes questions from each image's dense caption, one job
    # per part of the download; standardise reads the replies (adapter caption_mcq)
    rule write_questions:
        input:
            data="data/raw/{source}/data.parquet",
        output:
            "data/raw/{source}/questions/{part}.parquet",
        log:
            "logs/write_questions/{source}/{part}.log",
        wildcard_constraints:
            source=_names(QUESTION_SOURCES),
            part=r"\d{5}",
        conda:
            "../envs/vllm.yaml"
        params:
            spec=source_spec,
            model=config["models"]["question_writer"],
            seed=SEED,
        script:
            "../scripts/write_questions.py"


# One rule per source: its shard count (from config) fixes its outputs, so the whole DAG is
# known at parse time and each source is read once.
for _source in SOURCES:

    rule:
        name:
            f"standardise_{_source}"
        input:
            data=f"data/raw/{_source}/data.parquet",
            images=f"data/raw/{_source}/images",
            questions=question_paths(_source),
        output:
            shards=shard_paths("std", _source),
            dropped=f"data/std/{_source}/dropped.parquet",
            counts=f"data/std/{_source}/counts.json",
        log:
            f"logs/standardise/{_source}.log",
        conda:
            "../envs/data.yaml"
        # worker processes decode and hash the images (a core each); the shards are the same bytes
        # for any number, and a run with fewer cores gives the job fewer
        threads: 32
        resources:
            mem_mb=lambda wildcards, threads: 4000 + 600 * threads,
            cpus_per_task=lambda wildcards, threads: threads,
        params:
            spec=SOURCES[_source],
            images=config["images"],
            exclude=config["exclude"],
        script:
            "../scripts/standardise.py"


rule dedup:
    input:
        records=all_shard_paths("std"),
        benchmarks=expand("data/bench/{bench}.parquet", bench=BENCHMARKS),
    output:
        drops="data/dedup/drops.parquet",
        report="results/dedup_report.tsv",
    log:
        "logs/dedup.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        priority=list(SOURCES),
        dedup=config["dedup"],
    script:
        "../scripts/dedup.py"


# With grouping.clean_rows, one GPU job per group of shards puts every cleaning and extraction
# response into the shards' journals; each shard's clean job then loads no model. The markers are
# temporary and carry no content, so regrouping reruns nothing.
for _group, (_source, _shards) in GROUPS.get("clean", {}).items():

    rule:
        name:
            f"clean_generate_{_group}"
        input:
            records=[f"data/std/{_source}/{s}.parquet" for s in _shards],
            drops=rules.dedup.output.drops,
        output:
            markers=temp(group_markers("clean", _source, _shards)),
        log:
            f"logs/clean_generate/{_group}.log",
        conda:
            "../envs/vllm.yaml"
        params:
            clean=config["models"].get("clean"),
            extract=config["models"].get("extract"),
            seed=SEED,
        script:
            "../scripts/clean_generate.py"


rule clean:
    input:
        records="data/std/{source}/{shard}.parquet",
        drops=rules.dedup.output.drops,
        after=generated("clean"),
    output:
        records="data/clean/{source}/{shard}.parquet",
        dropped="data/clean/{source}/{shard}.dropped.parquet",
    log:
        "logs/clean/{source}/{shard}.log",
    conda:
        "../envs/vllm.yaml"
    params:
        clean=config["models"].get("clean"),
        extract=config["models"].get("extract"),
        seed=SEED,
    script:
        "../scripts/clean.py"
