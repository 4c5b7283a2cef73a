"""Every pipeline product, its code version and inputs, and how one shard of it is computed.

A Product is pure: given a StepContext (lake, shard, its settings section, an executor) it returns
the shard's table. ``materialize_product`` wraps it with the ledger: fresh shards are skipped,
stale ones are recomputed and written atomically, and every attempt is recorded. The Dagster
assets and the command line both call ``materialize_product``, so they agree on staleness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from dynpose.graph.executors import Executor, InProcessExecutor
from dynpose.graph.settings import Settings
from dynpose.graph.steps import annotations as _annotations
from dynpose.graph.steps import eval as _evaluation
from dynpose.graph.steps import filters as _filters
from dynpose.graph.steps import raw as _raw
from dynpose.graph.steps.base import Product, StepContext
from dynpose.storage.lake import Lake, storage_unavailable
from dynpose.storage.ledger import Ledger, LedgerRecord, config_hash, data_version

PRODUCTS: dict[str, Product] = {
    p.name: p for group in (_raw, _filters, _annotations, _evaluation) for p in group.PRODUCTS
}


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


def shard_names() -> list[str]:
    """The per-shard products, in dependency order."""
    return [p.name for p in topological() if not p.aggregate]


def aggregate_names() -> list[str]:
    """The products computed once over every shard, in dependency order."""
    return [p.name for p in topological() if p.aggregate]


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


def settings_hash(product: Product, settings: Settings) -> str:
    """The hash of every settings section that shapes this product: its own, then those it uses."""
    own = settings.section(product.name)
    if not product.uses:
        return config_hash(own)
    return config_hash({name: config_hash(settings.section(name)) for name in (product.name, *product.uses)})


def plan_product(
    lake: Lake, product: Product, shard: str, settings: Settings, ledger: Ledger | None = None
) -> str | None:
    """Why this product's shard must be computed, or None when it is fresh. ``ledger``: where the
    states are read (a LedgerSnapshot, when planning many shards; by default each state file)."""
    ledger = ledger or Ledger(lake)
    inputs = _input_versions(ledger, product, shard)
    key = ("settings_hash", product.name, id(settings))
    if key not in ledger.memo:
        ledger.memo[key] = (settings, settings_hash(product, settings))  # settings kept: its id stays its own
    return ledger.why_stale(product.name, shard, product.code_version, ledger.memo[key][1], inputs)


def _retry_count(product: Product, table: pa.Table) -> int:
    if not product.retry_statuses or "status" not in table.column_names:
        return 0
    return sum(s in product.retry_statuses for s in table.column("status").to_pylist())


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
    ledger: Ledger | None = None,
) -> Outcome:
    """Compute one product's shard if stale (or forced); record the attempt in the ledger.
    ``ledger``: the plan's snapshot, to record skips without reading every state again."""
    ledger = ledger or Ledger(lake)
    section = settings.section(product.name)
    cfg = settings_hash(product, settings)
    inputs = _input_versions(ledger, product, shard)
    reason = "forced" if force else ledger.why_stale(product.name, shard, product.code_version, cfg, inputs)
    base = dict(
        shard=shard,
        product=product.name,
        code_version=product.code_version,
        config_hash=cfg,
        input_versions=inputs,
        run_id=run_id,
    )
    if reason is None:
        state = ledger.state(product.name, shard)
        ledger.append(
            LedgerRecord(action="skipped", data_version=state.data_version, rows=state.rows, reason="fresh", **base)
        )
        return Outcome(product.name, shard, "skipped", state.data_version, state.rows, "fresh")
    log(f"{product.name}[{shard}]: computing ({reason})")
    lake.remove_stale_temporaries(lake.path("tables", product.name, f"shard={shard}"))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ctx = StepContext(lake, shard, section, settings, executor or InProcessExecutor(), log, progress)
    try:
        table = product.compute(ctx)
        payload = Lake.parquet_bytes(table)
        version = data_version(payload, product.code_version, cfg)
        lake.put_bytes(lake.table_path(product.name, shard), payload)
    except Exception as exc:
        wall = time.perf_counter() - wall0
        down = storage_unavailable(exc, lake.url)
        try:
            ledger.append(
                LedgerRecord(
                    action="failed",
                    reason=str(down) if down else f"{type(exc).__name__}: {exc}",
                    wall_s=wall,
                    cpu_s=time.process_time() - cpu0,
                    **base,
                )
            )
        except Exception as record_exc:  # storage that is down cannot take the record: say so, keep the cause
            log(f"{product.name}[{shard}]: the failure could not be recorded ({type(record_exc).__name__})")
        if down and down is not exc:
            raise down from exc
        raise
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # The state is written after the data: a crash in between leaves the shard stale, never wrong.
    retry = _retry_count(product, table)
    if retry:
        log(f"{product.name}[{shard}]: {retry} video(s) to retry on the next run")
    ledger.append(
        LedgerRecord(
            action="computed",
            data_version=version,
            rows=table.num_rows,
            retry=retry,
            wall_s=wall,
            cpu_s=cpu,
            reason=reason,
            **base,
        )
    )
    return Outcome(product.name, shard, "computed", version, table.num_rows, reason, wall)
