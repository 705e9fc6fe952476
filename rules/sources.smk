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


# One job per source reads its download once and writes its shards (sources.<name>.shards of them,
# data/std/<source>/<shard>.parquet) into one folder, which the shard jobs after it take as input.
rule standardise:
    input:
        data="data/raw/{source}/data.parquet",
        images="data/raw/{source}/images",
        questions=lambda wildcards: question_paths(wildcards.source),
    output:
        shards=directory("data/std/{source}"),
        dropped="data/std/{source}.dropped.parquet",
        counts="data/std/{source}.counts.json",
    log:
        "logs/standardise/{source}.log",
    conda:
        "../envs/data.yaml"
    # worker processes decode and hash the images (a core each); the shards are the same bytes
    # for any number, and a run with fewer cores gives the job fewer
    threads: 32
    resources:
        mem_mb=lambda wildcards, threads: 4000 + 600 * threads,
        cpus_per_task=lambda wildcards, threads: threads,
    params:
        spec=source_spec,
        images=config["images"],
        exclude=config["exclude"],
    script:
        "../scripts/standardise.py"


rule dedup:
    input:
        std=expand("data/std/{source}", source=SOURCES),
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
        records=all_shard_paths("std"),
        priority=list(SOURCES),
        dedup=config["dedup"],
    script:
        "../scripts/dedup.py"


# With grouping.clean_rows, one GPU job per group of shards puts every cleaning and extraction
# response into the shards' journals; each shard's clean job then loads no model. The markers are
# temporary and carry no content, so regrouping reruns nothing. A rule per group: a shard job's
# marker is its own (named by its shard, whatever its group), so the group job's outputs are as
# many as its shards, and a rule's outputs cannot vary in number with a wildcard.
for _group, (_source, _shards) in GROUPS.get("clean", {}).items():

    rule:
        name:
            f"clean_generate_{_group}"
        input:
            std=f"data/std/{_source}",
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
        std="data/std/{source}",
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
        records="data/std/{source}/{shard}.parquet",
        clean=config["models"].get("clean"),
        extract=config["models"].get("extract"),
        seed=SEED,
    script:
        "../scripts/clean.py"


# A grouped stage's group jobs read their shards through this list of the source's shards of the
# stage before: their set of inputs is then the same however the shards are grouped, so regrouping
# reruns nothing. The shards are `ancient` here: a rebuilt shard does not rebuild the list, which
# would rerun every group job of the source; it reruns its own shard job, and that one's group job.
# (A group job of a source starts once all of its shards of the stage before are there.)
rule list_shards:
    input:
        shards=lambda wildcards: ancient(shard_paths(wildcards.stage, wildcards.source)),
    output:
        "data/{stage}/{source}.shards.json",
    log:
        "logs/list_shards/{stage}/{source}.log",
    wildcard_constraints:
        stage="clean|traces|expanded",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/list_shards.py"
