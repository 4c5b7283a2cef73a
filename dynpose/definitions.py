"""The Dagster code location: every asset, resource, sensor and schedule of dynpose."""

import dagster as dg

from dynpose.assets import annotations, raw
from dynpose.resources import default_resources
from dynpose.sensors import ingest_job, ingest_schedule, ingest_sensor, process_shard_job

ALL_ASSETS = [raw.clip_catalog, annotations.sampled_frames]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    resources=default_resources(),
    jobs=[process_shard_job, ingest_job],
    sensors=[ingest_sensor],
    schedules=[ingest_schedule],
)
