from mmfr.snake import step, write_shard_list

with step(snakemake) as s:
    write_shard_list(list(s.input.shards), s.output[0])
