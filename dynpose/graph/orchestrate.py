"""Run the asset graph from the command line: plan with the ledger, launch Dagster runs for stale work.

This module and ``definitions`` / ``cli`` are the only library modules that import Dagster. Runs go
through Dagster (so the UI shows them), but only for shards with stale products: a shard whose
products are all fresh gets its skips recorded in the ledger without starting a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dynpose.graph.products import PRODUCTS, Outcome, downstream, materialize_product, plan_product, topological
from dynpose.graph.settings import load_settings
from dynpose.graph.steps.base import AGGREGATE
from dynpose.storage.ingest import Registry
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import Ledger, LedgerSnapshot, MissingInput

# Dagster's console logger prints every engine event at DEBUG; the CLI shows its own progress.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# The instance stays on this machine: no usage telemetry.
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def dagster_home(lake: Lake) -> Path:
    """DAGSTER_HOME if set; else <lake>/_dagster for local lakes, a local cache dir for S3 lakes."""
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
    elif lake.is_local:
        home = Path(lake.root) / "_dagster"
    else:
        cache = Path(os.environ.get("DYNPOSE_CACHE", Path.home() / ".cache" / "dynpose"))
        home = cache / ("dagster_" + lake.url.replace("://", "_").replace("/", "_"))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        config.write_text(DAGSTER_YAML)
    return home.resolve()


def instance_for(lake: Lake):
    import dagster as dg

    home = dagster_home(lake)
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    try:
        instance.get_dynamic_partitions("video_shards")
    except dg.DagsterInvalidInvocationError:
        # A process killed while Dagster first created its SQLite storage leaves tables missing,
        # and Dagster's migrations do not add them back. The instance holds only run history (the
        # ledger decides what is stale), so its storage is moved aside and started afresh.
        instance.dispose()
        aside = home / f"broken-{time.strftime('%Y%m%dT%H%M%S')}"
        for name in ("history", "storage", "schedules"):
            if (home / name).exists():
                aside.mkdir(exist_ok=True)
                shutil.move(str(home / name), str(aside / name))
        print(f"dagster storage in {home} was incomplete (an interrupted first run?): moved to {aside}, started afresh")
        instance = dg.DagsterInstance.get()
    return instance


@dataclass
class ShardPlan:
    shard: str
    stale: dict[str, str] = field(default_factory=dict)  # product -> reason
    fresh: list[str] = field(default_factory=list)


def plan_shard(lake: Lake, shard: str, settings, names: list[str], ledger: Ledger | None = None) -> ShardPlan:
    """Which of ``names`` must run for this shard: stale ones plus everything downstream of them.
    ``ledger``: a LedgerSnapshot shared by the plans of many shards (default: read each state)."""
    plan = ShardPlan(shard)
    for p in topological(names):
        if p.name in plan.stale:
            continue
        try:
            reason = plan_product(lake, p, shard, settings, ledger)
        except MissingInput as exc:
            reason = str(exc)
        if reason is None:
            plan.fresh.append(p.name)
            continue
        plan.stale[p.name] = reason
        for d in downstream(p.name):
            if d in names and d not in plan.stale:
                plan.stale[d] = plan.stale.get(d, f"downstream of {p.name}")
                if d in plan.fresh:
                    plan.fresh.remove(d)
    return plan


def materialize(
    lake_url: str,
    settings_file: str | None = None,
    shards: list[str] | None = None,
    select: list[str] | None = None,
    executor: str = "in_process",
    ray_address: str | None = None,
    progress: bool = True,
    log=print,
    workers: int | None = None,
) -> list[Outcome]:
    """Bring the selected products of the selected shards up to date."""
    import dagster as dg
    from tqdm import tqdm

    from dynpose.graph.definitions import ASSETS
    from dynpose.resources import ExecutorResource, LakeResource

    lake = Lake(lake_url)
    settings = load_settings(settings_file)
    all_shards = Registry(lake).shards()
    if shards:
        missing = sorted(set(shards) - set(all_shards))
        if missing:
            raise SystemExit(f"unknown shard(s): {', '.join(missing)}; the lake has {len(all_shards)} shard(s)")
    shards = shards or all_shards
    names = [p.name for p in topological(select)] if select else list(PRODUCTS)
    instance = instance_for(lake)
    known = set(instance.get_dynamic_partitions("video_shards"))
    new = [s for s in all_shards if s not in known]
    if new:
        instance.add_dynamic_partitions("video_shards", new)
    resources = {
        "lake": LakeResource(url=lake_url, settings_file=settings_file),
        "executor": ExecutorResource(kind=executor, address=ray_address, **({"workers": workers} if workers else {})),
    }
    outcomes: list[Outcome] = []
    shard_names = [n for n in names if not PRODUCTS[n].aggregate]
    aggregate_names = [n for n in names if PRODUCTS[n].aggregate]
    bar = tqdm(shards, desc="shards", unit="shard", disable=not progress or not shard_names)
    # One snapshot of the states plans every shard (a shard's run changes only that shard's states).
    snapshot = LedgerSnapshot(lake)
    with _video_progress(progress):
        for shard in bar:
            outcomes += _materialize_shard(
                dg, instance, resources, ASSETS, lake, settings, shard, shard_names, bar, log, snapshot
            )
        if aggregate_names and all_shards:
            snapshot = LedgerSnapshot(lake)  # after the shard runs: the aggregates hash their states
            plan = plan_shard(lake, AGGREGATE, settings, aggregate_names, snapshot)
            for name in plan.fresh:
                outcomes.append(
                    materialize_product(lake, PRODUCTS[name], AGGREGATE, settings, log=log, ledger=snapshot)
                )
            if plan.stale:
                outcomes += _run(dg, instance, resources, ASSETS, lake, list(plan.stale), None, log)
    return outcomes


def _materialize_shard(
    dg, instance, resources, assets, lake, settings, shard, names, bar, log, ledger=None
) -> list[Outcome]:
    plan = plan_shard(lake, shard, settings, names, ledger)
    outcomes = [
        materialize_product(lake, PRODUCTS[name], shard, settings, log=log, ledger=ledger) for name in plan.fresh
    ]  # recorded skips, no run
    if plan.stale:
        bar.set_postfix_str(f"{shard}: {', '.join(plan.stale)}")
        outcomes += _run(dg, instance, resources, assets, lake, list(plan.stale), shard, log)
    return outcomes


@contextlib.contextmanager
def _video_progress(enabled: bool):
    """A second progress bar, per product and shard, fed by the assets' ``dynpose.progress`` log records."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(desc="videos", unit="video", leave=False, delay=2.0)

    class Handler(logging.Handler):
        current = None

        def emit(self, record):
            name = record.getMessage()
            if name != self.current:  # a new product or shard: restart the bar (and its rate)
                self.current = name
                bar.set_description(name, refresh=False)
                bar.reset(total=getattr(record, "total", None))
            bar.update(getattr(record, "done", 0) - bar.n)

    logger, handler = logging.getLogger("dynpose.progress"), Handler()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the bar is the one place these records show
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        bar.close()


def _run(dg, instance, resources, assets, lake, selection: list[str], shard: str | None, log) -> list[Outcome]:
    """One Dagster run of the selected assets (of one shard, or of the aggregates); its outcomes,
    as the ledger recorded them under the run's id."""
    key = shard or AGGREGATE
    result = dg.materialize(
        assets,
        selection=selection,
        partition_key=shard,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET_RUN_CONFIG,
        tags={"dynpose/shard": key},
    )
    outcomes = [
        Outcome(r.product, r.shard, r.action, r.data_version, r.rows, r.reason, r.wall_s)
        for r in Ledger(lake).run_records(result.run_id, selection, key)
    ]
    recorded = {o.product for o in outcomes}
    for e in result.all_events:
        if e.is_step_failure:
            message = e.event_specific_data.error.message.strip()
            log(f"FAILED {key} {e.step_key}: {message}")
            if e.step_key not in recorded:  # failed before the ledger saw it (e.g. a resource)
                outcomes.append(Outcome(e.step_key, key, "failed", "", 0, message))
    return outcomes


def status(lake_url: str, settings_file: str | None = None, timer: dict | None = None) -> list[dict]:
    """Per product: shards computed, stale, never computed (the ledger decides). ``timer`` gets
    seconds per phase (listings, state reads, planning)."""
    lake = Lake(lake_url)
    settings = load_settings(settings_file)
    timer = {} if timer is None else timer
    t0 = time.perf_counter()
    shards = Registry(lake).shards()
    timer["registry listing"] = time.perf_counter() - t0
    ledger = LedgerSnapshot(lake, timer=timer)
    t0 = time.perf_counter()
    ledger.prefetch(list(PRODUCTS))
    timer["states and tables (wall)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = []
    for p in topological():
        counts = {"fresh": 0, "stale": 0, "missing": 0}
        for shard in [AGGREGATE] if p.aggregate else shards:
            try:
                reason = plan_product(lake, p, shard, settings, ledger)
            except MissingInput:
                reason = "never computed"
            if reason is None:
                counts["fresh"] += 1
            elif reason == "never computed":
                counts["missing"] += 1
            else:
                counts["stale"] += 1
        rows.append(
            {"product": p.name, "code_version": p.code_version, "shards": 1 if p.aggregate else len(shards), **counts}
        )
    timer["staleness checks"] = time.perf_counter() - t0
    return rows
