"""Build the thin Dagster asset for a library Product: wiring, ledger, metadata, checks; no computation.

A group folder (``assets/raw``, ``assets/filters``, ...) lists its assets as
``name = product_asset("name")``; ``definitions`` loads every asset and check from the folders,
so adding a product never touches it.
"""

import base64
import logging

import dagster as dg
import pyarrow as pa

from dynpose.graph.checks import checks_for, run_checks
from dynpose.graph.products import PRODUCTS, downstream, materialize_product, plan_product
from dynpose.graph.steps.base import AGGREGATE, Product
from dynpose.resources import ExecutorResource, LakeResource
from dynpose.storage.ledger import MissingInput

video_shards = dg.DynamicPartitionsDefinition(name="video_shards")

# Per-video progress also goes to this logger, which the CLI turns into a progress bar
# (Dagster's own console log stays at WARNING there).
progress_log = logging.getLogger("dynpose.progress")

_ARROW_TYPES = {
    pa.types.is_string: "string",
    pa.types.is_integer: "int",
    pa.types.is_floating: "float",
    pa.types.is_boolean: "bool",
    pa.types.is_list: "list",
    pa.types.is_binary: "bytes",
}


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    def kind(t: pa.DataType) -> str:
        return next((name for test, name in _ARROW_TYPES.items() if test(t)), str(t))

    return dg.TableSchema(columns=[dg.TableColumn(f.name, kind(f.type)) for f in schema])


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


def _selected(context: dg.AssetExecutionContext) -> set[str]:
    """The products this run materializes (a UI re-execution may run a subset of the job's steps)."""
    keys = {k.to_user_string() for k in context.job_def.asset_layer.selected_asset_keys}
    steps = context.run.step_keys_to_execute
    return keys & set(steps) if steps is not None else keys


def _downstream_needs_it(context, lake, product: Product, shard: str, settings) -> bool:
    """Whether a product downstream of this one, in this run, is stale (so this one must pass through).

    Dagster skips every step below an asset that yields no output, so a fresh product yields one
    only when something after it in the same run has work to do.
    """
    for name in (set(downstream(product.name)) - {product.name}) & _selected(context):
        try:
            if plan_product(lake, PRODUCTS[name], shard, settings) is not None:
                return True
        except MissingInput:
            return True
    return False


def product_asset(name: str) -> dg.AssetsDefinition:
    product = PRODUCTS[name]
    checks = checks_for(product.schema, product.checks)
    metadata = {"dagster/column_schema": column_schema(product.schema)} if product.schema is not None else {}

    @dg.asset(
        name=product.name,
        partitions_def=None if product.aggregate else video_shards,
        code_version=product.code_version,
        deps=list(product.deps),
        group_name=product.group,
        description=product.description,
        kinds={"parquet"},
        metadata=metadata,
        output_required=False,  # a fresh shard is a skip, not a new materialization
        check_specs=[dg.AssetCheckSpec(c, asset=product.name) for c in checks],
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource, executor: ExecutorResource):
        store, settings = lake.lake(), lake.settings()
        shard = AGGREGATE if product.aggregate else context.partition_key
        current = PRODUCTS[product.name]  # looked up at run time: the registry is the one source of code versions

        def progress(done: int, total: int) -> None:
            context.log.info(f"{product.name}[{shard}]: {done}/{total} videos")
            progress_log.info("%s[%s]", product.name, shard, extra={"done": done, "total": total})

        outcome = materialize_product(
            store,
            current,
            shard,
            settings,
            executor.executor(),
            log=context.log.info,
            run_id=context.run.run_id,
            progress=progress,
        )
        if outcome.action == "skipped" and not _downstream_needs_it(context, store, current, shard, settings):
            context.log.info(f"{product.name}[{shard}] is fresh (data version {outcome.data_version}): skipped")
        else:
            meta = {
                "action": outcome.action,
                "reason": outcome.reason,
                "rows": dg.MetadataValue.int(outcome.rows),
                "path": dg.MetadataValue.path(store.table_path(product.name, shard)),
                "wall_s": dg.MetadataValue.float(round(outcome.wall_s, 3)),
            }
            if current.metadata is not None:
                meta.update({k: _as_metadata(v) for k, v in current.metadata(store, shard).items()})
            yield dg.MaterializeResult(data_version=dg.DataVersion(outcome.data_version), metadata=meta)
        # The checks look at what is stored, fresh or new.
        table = store.read_table(product.name, shard) if store.exists(store.table_path(product.name, shard)) else None
        for check, result in run_checks(checks, table, current.schema, settings.asset_checks).items():
            yield dg.AssetCheckResult(
                check_name=check,
                passed=result.passed,
                description=result.description,
                severity=dg.AssetCheckSeverity.WARN if result.severity == "warn" else dg.AssetCheckSeverity.ERROR,
                metadata={
                    k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v
                    for k, v in result.metadata.items()
                },
            )

    return _asset
