"""Incremental ingest: a sensor watching the source and an hourly schedule.

The source is ``DYNPOSE_SOURCE`` (local directory or s3:// prefix). New files become new shards
(library ``ingest``), each shard a new dynamic partition with one run requested for it. Run keys
are the shard keys, so a shard is never requested twice, whoever ingested it (sensor, schedule
or ``dynpose ingest``).
"""


import os

import dagster as dg

from dynpose.assets.factory import video_shards
from dynpose.storage.ingest import Registry, ingest
from dynpose.resources import LakeResource

process_shard_job = dg.define_asset_job(
    "process_shard", selection=dg.AssetSelection.all(), partitions_def=video_shards,
    description="Materialize every product of one video shard.",
)


def _source() -> str | None:
    return os.environ.get("DYNPOSE_SOURCE") or None


@dg.sensor(job=process_shard_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def ingest_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Ingest new files from DYNPOSE_SOURCE and request a run for every shard not yet requested."""
    store = lake.lake()
    source = _source()
    if source:
        report = ingest(source, store, lake.settings().ingest)
        context.log.info(report.summary())
    last = context.cursor or ""
    new = [s for s in Registry(store).shards() if s > last]
    if not new:
        return dg.SkipReason(f"no new shard after '{last or 'start'}'" + ("" if source else "; DYNPOSE_SOURCE is not set"))
    known = set(context.instance.get_dynamic_partitions(video_shards.name))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=s, run_key=f"shard-{s}") for s in new],
        dynamic_partitions_requests=[video_shards.build_add_request([s for s in new if s not in known])],
        cursor=new[-1],
    )


@dg.op
def ingest_source(context: dg.OpExecutionContext, lake: LakeResource) -> None:
    source = _source()
    if not source:
        context.log.warning("DYNPOSE_SOURCE is not set: nothing to ingest")
        return
    report = ingest(source, lake.lake(), lake.settings().ingest)
    context.log.info(report.summary())
    if report.new_shards:
        context.instance.add_dynamic_partitions(video_shards.name, report.new_shards)


@dg.job(description="Ingest new files from DYNPOSE_SOURCE into new shards (the ingest sensor then requests their runs).")
def ingest_job():
    ingest_source()


ingest_schedule = dg.ScheduleDefinition(
    job=ingest_job, cron_schedule="0 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
)
