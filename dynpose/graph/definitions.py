"""The Dagster code location: every asset, resource, sensor and schedule of dynpose."""

import dagster as dg

from dynpose.assets import annotations, raw
from dynpose.assets import eval as evaluation
from dynpose.resources import default_resources
from dynpose.sensors import ingest_job, ingest_schedule, ingest_sensor, process_shard_job

ALL_ASSETS = [
    raw.clip_catalog,
    annotations.sampled_frames, annotations.dynamic_masks, annotations.tracklets, annotations.camera_poses, annotations.pose_quality,
    evaluation.baseline_poses, evaluation.pose_benchmark, evaluation.reprojection_benchmark, evaluation.mask_benchmark,
    evaluation.filter_benchmark, evaluation.benchmark_report, evaluation.dataset_statistics,
]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    resources=default_resources(),
    jobs=[process_shard_job, ingest_job],
    sensors=[ingest_sensor],
    schedules=[ingest_schedule],
)
