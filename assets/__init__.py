"""Dagster assets: one thin asset per library product, partitioned by video shard."""
