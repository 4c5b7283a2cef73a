"""Build the thin Dagster asset for a library Product: wiring, ledger, metadata; no computation."""


from collections import Counter

import dagster as dg

from dynpose.products import PRODUCTS, Product, materialize_product
from dynpose.resources import ExecutorResource, LakeResource

video_shards = dg.DynamicPartitionsDefinition(name="video_shards")


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


def product_asset(product: Product) -> dg.AssetsDefinition:
    @dg.asset(
        name=product.name,
        partitions_def=video_shards,
        code_version=product.code_version,
        deps=list(product.deps),
        group_name=product.group,
        description=product.description,
        kinds={"parquet"},
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource, executor: ExecutorResource) -> dg.MaterializeResult:
        store = lake.lake()
        # Look the product up at run time: the registry is the one source of code versions.
        outcome = materialize_product(
            store, PRODUCTS[product.name], context.partition_key, lake.settings(), executor.executor(),
            log=context.log.info, run_id=context.run_id,
        )
        if outcome.action == "skipped":
            context.log.info(f"{product.name}[{context.partition_key}] is fresh: nothing to do")
        table = store.read_table(product.name, context.partition_key) if outcome.action == "computed" else None
        return dg.MaterializeResult(
            data_version=dg.DataVersion(outcome.data_version),
            metadata=_metadata(outcome, store.table_path(product.name, context.partition_key), table),
        )

    return _asset
