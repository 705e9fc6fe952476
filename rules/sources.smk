rule fetch_source:
    output:
        "data/raw/{source}/data.parquet",
    log:
        "logs/fetch_source/{source}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
    params:
        spec=source_spec,
        seed=SEED,
    script:
        "../scripts/fetch_source.py"


# One rule per source: its shard count (from config) fixes its outputs, so the whole DAG is
# known at parse time and each source is read once.
for _source in SOURCES:

    rule:
        name:
            f"standardise_{_source}"
        input:
            f"data/raw/{_source}/data.parquet",
        output:
            shards=shard_paths("std", _source),
            quarantine=f"data/std/{_source}/quarantine.parquet",
        log:
            f"logs/standardise/{_source}.log",
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=8000,
        params:
            source=_source,
            license=SOURCES[_source]["license"],
            images=config["images"],
        script:
            "../scripts/standardise.py"
