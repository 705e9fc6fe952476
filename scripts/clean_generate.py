from mmfr.clean import generate_group
from mmfr.snake import journal_of, step

with step(snakemake) as s:
    journals = [journal_of(m.removesuffix(".generated") + ".parquet") for m in s.output.markers]
    counts = generate_group(list(s.input.records), journals, s.input.drops, s.params.clean, s.params.extract,
                            s.params.seed)
    for marker in s.output.markers:
        with open(marker, "w") as f:
            f.write(f"{counts}\n")
