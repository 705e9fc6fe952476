import logging

from mmfr.release import compare
from mmfr.snake import step

with step(snakemake) as s:
    stages = ("clean", "captions", "traces", "verified", "passrate")
    subsets = {name: f"data/subsets/{name}" for name in s.params.subsets}
    result = compare({k: list(s.input[k]) for k in stages}, subsets, s.params.release, s.params.revision,
                     dict(s.params.subsets), s.output[0], s.params.distance)
    for row in result["sources"]:
        logging.info("%s: %d of %d matched (%d by image content)", row["source"], row["matched"], row["records"],
                     row["matched_by_image_content"])
