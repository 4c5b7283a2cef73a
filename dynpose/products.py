"""Every pipeline product, its code version and inputs, and how one shard of it is computed.

A Product is pure: given a StepContext (lake, shard, its settings section, an executor) it returns
the shard's table. ``materialize_product`` wraps it with the ledger: fresh shards are skipped,
stale ones are recomputed and written atomically, and every attempt is recorded. The Dagster
assets and the command line both call ``materialize_product``, so they agree on staleness.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from . import catalog
from .executors import Executor, InProcessExecutor
from .ingest import Registry
from .lake import Lake
from .ledger import Ledger, LedgerRecord, config_hash, data_version
from .settings import Settings


@dataclass
class StepContext:
    lake: Lake
    shard: str
    settings: object  # this product's settings section
    executor: Executor = field(default_factory=InProcessExecutor)
    log: Callable[[str], None] = print
    progress: Callable[[int, int], None] | None = None

    def videos(self) -> list[dict]:
        return Registry(self.lake).videos(self.shard)

    def input(self, product: str) -> pa.Table | None:
        """The input product of this shard (of every shard, for an aggregate product)."""
        if self.shard == AGGREGATE:
            return self.lake.read_product(product)
        return self.lake.read_table(product, self.shard)

    def ok_videos(self) -> list[dict]:
        """Catalog rows of this shard's videos whose status is ok."""
        return [r for r in self.input("clip_catalog").to_pylist() if r["status"] == "ok"]


@dataclass(frozen=True)
class Product:
    name: str
    code_version: str
    deps: tuple[str, ...]
    compute: Callable[[StepContext], pa.Table]
    description: str
    group: str
    aggregate: bool = False  # computed once over every shard (ledger shard key "all")
    # Extra asset metadata (tables, plots) read back from the lake: {name: MetadataValue-able}.
    metadata: Callable[[Lake, str], dict] | None = None


AGGREGATE = "all"


# -- raw ------------------------------------------------------------------------------------

def compute_clip_catalog(ctx: StepContext) -> pa.Table:
    rows = ctx.executor.map(functools.partial(catalog.catalog_row, settings=ctx.settings), ctx.videos(), ctx.progress)
    return catalog.catalog_table(rows)


def _frame_rows(video: dict, settings) -> list[dict]:
    return catalog.frame_rows(video["video_id"], video["source_uri"], settings)


def compute_sampled_frames(ctx: StepContext) -> pa.Table:
    per_video = ctx.executor.map(functools.partial(_frame_rows, settings=ctx.settings), ctx.ok_videos(), ctx.progress)
    return pa.Table.from_pylist([r for rows in per_video for r in rows], schema=catalog.FRAMES_SCHEMA)


CLIP_CATALOG = Product(
    "clip_catalog", "1", (), compute_clip_catalog,
    "One row per video: source, container, codec, size, fps, frames, duration, rotation, audio, caption, labels, status.",
    "raw",
)
SAMPLED_FRAMES = Product(
    "sampled_frames", "1", ("clip_catalog",), compute_sampled_frames,
    "The frames annotation uses (12 fps by default) with their source indices and timestamps.",
    "annotations",
)

PRODUCTS: dict[str, Product] = {p.name: p for p in (CLIP_CATALOG, SAMPLED_FRAMES)}


def topological(names: list[str] | None = None) -> list[Product]:
    """Products in dependency order (all, or the named ones and nothing else)."""
    order, seen = [], set()

    def visit(p: Product):
        if p.name in seen:
            return
        seen.add(p.name)
        for d in p.deps:
            visit(PRODUCTS[d])
        order.append(p)

    for p in PRODUCTS.values():
        visit(p)
    if names is None:
        return order
    unknown = set(names) - set(PRODUCTS)
    if unknown:
        raise ValueError(f"unknown product(s): {', '.join(sorted(unknown))}; known: {', '.join(PRODUCTS)}")
    return [p for p in order if p.name in names]


def downstream(name: str) -> list[str]:
    out = {name}
    for p in topological():
        if set(p.deps) & out:
            out.add(p.name)
    return [p.name for p in topological() if p.name in out]


@dataclass
class Outcome:
    product: str
    shard: str
    action: str  # computed | skipped | failed
    data_version: str
    rows: int
    reason: str
    wall_s: float = 0.0


def _input_versions(ledger: Ledger, product: Product, shard: str) -> dict[str, str]:
    if product.aggregate:
        return ledger.aggregate_input_versions(product.deps)
    return ledger.input_versions(product.deps, shard)


def plan_product(lake: Lake, product: Product, shard: str, settings: Settings) -> str | None:
    """Why this product's shard must be computed, or None when it is fresh."""
    ledger = Ledger(lake)
    inputs = _input_versions(ledger, product, shard)
    return ledger.why_stale(product.name, shard, product.code_version, config_hash(settings.section(product.name)), inputs)


def materialize_product(
    lake: Lake,
    product: Product,
    shard: str,
    settings: Settings,
    executor: Executor | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
    run_id: str = "",
    force: bool = False,
) -> Outcome:
    """Compute one product's shard if stale (or forced); record the attempt in the ledger."""
    ledger = Ledger(lake)
    section = settings.section(product.name)
    cfg = config_hash(section)
    inputs = _input_versions(ledger, product, shard)
    reason = "forced" if force else ledger.why_stale(product.name, shard, product.code_version, cfg, inputs)
    base = dict(shard=shard, product=product.name, code_version=product.code_version, config_hash=cfg, input_versions=inputs, run_id=run_id)
    if reason is None:
        state = ledger.state(product.name, shard)
        ledger.append(LedgerRecord(action="skipped", data_version=state.data_version, rows=state.rows, reason="fresh", **base))
        return Outcome(product.name, shard, "skipped", state.data_version, state.rows, "fresh")
    log(f"{product.name}[{shard}]: computing ({reason})")
    lake.remove_stale_temporaries(lake.path("tables", product.name, f"shard={shard}"))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ctx = StepContext(lake, shard, section, executor or InProcessExecutor(), log, progress)
    try:
        table = product.compute(ctx)
        payload = Lake.parquet_bytes(table)
        version = data_version(payload, product.code_version, cfg, inputs)
        lake.put_bytes(lake.table_path(product.name, shard), payload)
    except Exception as exc:
        wall = time.perf_counter() - wall0
        ledger.append(LedgerRecord(action="failed", reason=f"{type(exc).__name__}: {exc}", wall_s=wall, cpu_s=time.process_time() - cpu0, **base))
        raise
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # The state is written after the data: a crash in between leaves the shard stale, never wrong.
    ledger.append(LedgerRecord(action="computed", data_version=version, rows=table.num_rows, wall_s=wall, cpu_s=cpu, reason=reason, **base))
    return Outcome(product.name, shard, "computed", version, table.num_rows, reason, wall)
