"""Incremental ingest and processing, driven by sensors (and an hourly ingest schedule).

- ``source_sensor`` lists ``DYNPOSE_SOURCE`` (local directory or s3:// prefix) and, when files
  are there that were never ingested, launches ``ingest_job``: the hashing happens in that run,
  not in the sensor tick (a tick has a time limit; thousands of new videos would exceed it).
- ``shard_sensor`` turns every new shard into a dynamic partition and requests one
  ``process_shard`` run for it; the run key is the shard key, so a shard is never requested
  twice, whoever ingested it (sensor, schedule or ``dynpose ingest``).
- ``aggregates_sensor`` requests ``aggregates`` (report, statistics, filter benchmark) when they
  are stale and no shard run is waiting or running; the run key is the hash of their inputs'
  versions, so one state of the lake gets one aggregate run.
"""

import hashlib
import os

import dagster as dg

from dynpose.assets.factory import video_shards
from dynpose.graph.products import PRODUCTS, aggregate_names, plan_product, shard_names
from dynpose.graph.steps.base import AGGREGATE
from dynpose.resources import LakeResource
from dynpose.sensors.export import export_job
from dynpose.storage.ingest import Registry, ingest, unseen_files
from dynpose.storage.ledger import Ledger, MissingInput

process_shard_job = dg.define_asset_job(
    "process_shard",
    selection=dg.AssetSelection.assets(*shard_names()),
    partitions_def=video_shards,
    description="Materialize every per-shard product of one video shard (the aggregates have their own job).",
)
aggregates_job = dg.define_asset_job(
    "aggregates",
    selection=dg.AssetSelection.assets(*aggregate_names()),
    description="The products over every shard: filter benchmark, benchmark report, dataset statistics.",
)


def _source() -> str | None:
    return os.environ.get("DYNPOSE_SOURCE") or None


def _interval(default: int) -> int:
    """Seconds between a sensor's ticks: ``default``, or DYNPOSE_SENSOR_INTERVAL_S for every sensor
    (read when the code location loads; tests use a few seconds)."""
    return int(os.environ.get("DYNPOSE_SENSOR_INTERVAL_S") or default)


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


@dg.job(description="Ingest new files from DYNPOSE_SOURCE into new shards (shard_sensor then requests their runs).")
def ingest_job():
    ingest_source()


@dg.sensor(job=ingest_job, minimum_interval_seconds=_interval(60), default_status=dg.DefaultSensorStatus.STOPPED)
def source_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """List DYNPOSE_SOURCE; launch an ingest run when files there were never ingested."""
    source = _source()
    if not source:
        return dg.SkipReason("DYNPOSE_SOURCE is not set")
    new = unseen_files(source, lake.lake(), lake.settings().ingest)
    if not new:
        return dg.SkipReason(f"no new file under {source}")
    listing = "\n".join(f"{f.uri}|{f.size}|{f.mtime}" for f in new)
    return dg.RunRequest(
        run_key="ingest-" + hashlib.sha256(listing.encode()).hexdigest()[:16], tags={"dynpose/new_files": str(len(new))}
    )


@dg.sensor(job=process_shard_job, minimum_interval_seconds=_interval(30), default_status=dg.DefaultSensorStatus.STOPPED)
def shard_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Request a run for every shard not yet requested (shard manifests are listed, nothing is read)."""
    last = context.cursor or ""
    new = [s for s in Registry(lake.lake()).shards() if s > last]
    if not new:
        return dg.SkipReason(f"no new shard after '{last or 'start'}'")
    known = set(context.instance.get_dynamic_partitions(video_shards.name))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=s, run_key=f"shard-{s}") for s in new],
        dynamic_partitions_requests=[video_shards.build_add_request([s for s in new if s not in known])],
        cursor=new[-1],
    )


@dg.sensor(job=aggregates_job, minimum_interval_seconds=_interval(120), default_status=dg.DefaultSensorStatus.STOPPED)
def aggregates_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Refresh the aggregates once the shard runs have settled."""
    busy = context.instance.get_runs_count(
        dg.RunsFilter(
            job_name=process_shard_job.name,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED],
        )
    )
    if busy:
        return dg.SkipReason(f"{busy} shard run(s) waiting or running")
    store, settings = lake.lake(), lake.settings()
    try:
        stale = [n for n in aggregate_names() if plan_product(store, PRODUCTS[n], AGGREGATE, settings) is not None]
    except MissingInput as exc:
        return dg.SkipReason(str(exc))
    if not stale:
        return dg.SkipReason("the aggregates are fresh")
    inputs = Ledger(store).aggregate_input_versions(tuple(sorted({d for n in stale for d in PRODUCTS[n].deps})))
    key = hashlib.sha256(repr(sorted(inputs.items())).encode()).hexdigest()[:16]
    return dg.RunRequest(run_key=f"aggregates-{key}", tags={"dynpose/stale": ",".join(stale)})


ingest_schedule = dg.ScheduleDefinition(
    job=ingest_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

JOBS = [process_shard_job, aggregates_job, ingest_job, export_job]
SENSORS = [source_sensor, shard_sensor, aggregates_sensor]
SCHEDULES = [ingest_schedule]
