"""Build the thin Dagster asset for a library Product: wiring, ledger, metadata; no computation."""


import base64
import logging
from collections import Counter

import dagster as dg

from dynpose.graph.products import AGGREGATE, PRODUCTS, Product, materialize_product
from dynpose.resources import ExecutorResource, LakeResource

video_shards = dg.DynamicPartitionsDefinition(name="video_shards")

# Per-video progress also goes to this logger, which the CLI turns into a progress bar
# (Dagster's own console log stays at WARNING there).
progress_log = logging.getLogger("dynpose.progress")


def _metadata(outcome, table_path: str, table) -> dict:
    meta = {
        "action": outcome.action,
        "reason": outcome.reason,
        "rows": dg.MetadataValue.int(outcome.rows),
        "data_version": outcome.data_version,
        "path": dg.MetadataValue.path(table_path),
        "wall_s": dg.MetadataValue.float(round(outcome.wall_s, 3)),
    }
    if table is not None and "status" in table.column_names:
        meta["status_counts"] = dg.MetadataValue.json(dict(Counter(table.column("status").to_pylist())))
    return meta


def _as_metadata(value):
    """Library metadata is plain data: ("md", text), ("png", bytes), ("json", obj) or a scalar."""
    if isinstance(value, tuple) and len(value) == 2:
        kind, payload = value
        if kind == "md":
            return dg.MetadataValue.md(payload)
        if kind == "png":  # Dagster renders markdown images, so plots travel as data URIs
            return dg.MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(payload).decode()})")
        if kind == "json":
            return dg.MetadataValue.json(payload)
    return value


def product_asset(product: Product) -> dg.AssetsDefinition:
    @dg.asset(
        name=product.name,
        partitions_def=None if product.aggregate else video_shards,
        code_version=product.code_version,
        deps=list(product.deps),
        group_name=product.group,
        description=product.description,
        kinds={"parquet"},
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource, executor: ExecutorResource) -> dg.MaterializeResult:
        store = lake.lake()
        shard = AGGREGATE if product.aggregate else context.partition_key
        # Look the product up at run time: the registry is the one source of code versions.
        current = PRODUCTS[product.name]

        def progress(done: int, total: int) -> None:
            context.log.info(f"{product.name}[{shard}]: {done}/{total} videos")
            progress_log.info("%s[%s]", product.name, shard, extra={"done": done, "total": total})

        outcome = materialize_product(
            store, current, shard, lake.settings(), executor.executor(), log=context.log.info, run_id=context.run_id,
            progress=progress,
        )
        if outcome.action == "skipped":
            context.log.info(f"{product.name}[{shard}] is fresh: nothing to do")
        table = store.read_table(product.name, shard) if outcome.action == "computed" else None
        metadata = _metadata(outcome, store.table_path(product.name, shard), table)
        if current.metadata is not None:
            metadata.update({k: _as_metadata(v) for k, v in current.metadata(store, shard).items()})
        return dg.MaterializeResult(data_version=dg.DataVersion(outcome.data_version), metadata=metadata)

    return _asset
