"""SQL over the lake: a DuckDB catalog file with one view per product, rebuilt from the lake.

The catalog is derived state. ``build_catalog`` recreates it from whatever the lake holds; views
read the Parquet files in place (through fsspec for s3:// lakes, so no DuckDB extension download
is needed). Queries open the catalog read-only.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import duckdb

from dynpose.storage.lake import TABLES, Lake

# Views over the lake's own bookkeeping, besides the products.
LEDGER_VIEW = "ledger"

# The VLM's spend per use and shard, over the products that ask a VLM (those present). A request
# was sent for every row that has an answer or a fault and is not cached; a cached row's tokens and
# cost are its original request's, so they count in the cache's savings, not in the spend.
VLM_SPEND_VIEW = "vlm_spend"
VLM_USES = {
    "filter_vlm": "SELECT shard, status, tokens_in, tokens_out, cost_usd, cached FROM filter_vlm",
    "dynamic_masks": "SELECT shard, vlm_status AS status, vlm_tokens_in AS tokens_in, vlm_tokens_out AS tokens_out, "
    "vlm_cost_usd AS cost_usd, vlm_cached AS cached FROM dynamic_masks",
}
_SPEND = """
SELECT '{use}' AS use, shard,
    count(*) AS videos,
    count(*) FILTER (WHERE status IN ('ok', 'vlm_error', 'vlm_bad_answer') AND NOT coalesce(cached, false)) AS asked,
    count(*) FILTER (WHERE coalesce(cached, false)) AS cached,
    count(*) FILTER (WHERE status = 'vlm_error') AS vlm_error,
    count(*) FILTER (WHERE status = 'vlm_bad_answer') AS vlm_bad_answer,
    count(*) FILTER (WHERE status = 'skipped') AS skipped,
    coalesce(sum(tokens_in) FILTER (WHERE NOT coalesce(cached, false)), 0) AS tokens_in,
    coalesce(sum(tokens_out) FILTER (WHERE NOT coalesce(cached, false)), 0) AS tokens_out,
    coalesce(sum(cost_usd) FILTER (WHERE NOT coalesce(cached, false)), 0) AS cost_usd,
    coalesce(sum(cost_usd) FILTER (WHERE coalesce(cached, false)), 0) AS saved_usd
FROM ({source}) GROUP BY shard
"""


def catalog_path(lake: Lake) -> Path:
    if lake.is_local:
        return Path(lake.root) / "catalog.duckdb"
    cache = Path(os.environ.get("DYNPOSE_CACHE", Path.home() / ".cache" / "dynpose"))
    safe = lake.url.replace("://", "_").replace("/", "_")
    return cache / f"{safe}.duckdb"


def _connect(lake: Lake, path: Path | str, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    if not lake.is_local:
        con.register_filesystem(lake.fs)
    return con


def _glob(lake: Lake, *parts: str) -> str:
    return lake.uri(*parts)


def build_catalog(lake: Lake) -> list[str]:
    """(Re)create one view per product (and the ledger); returns the view names."""
    path = catalog_path(lake)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build into a temporary file and swap it in, so readers never see a half-built catalog.
    fd, tmp = tempfile.mkstemp(prefix=".catalog-", suffix=".duckdb", dir=path.parent)
    os.close(fd)
    os.remove(tmp)
    views = []
    con = _connect(lake, tmp, read_only=False)
    try:
        for product in lake.products():
            if not lake.product_shards(product):
                continue
            src = _glob(lake, TABLES, product, "shard=*", "data.parquet")
            try:
                con.execute(
                    f"CREATE VIEW \"{product}\" AS SELECT * FROM read_parquet('{src}', hive_partitioning = true, "
                    "union_by_name = true)"
                )
                views.append(product)
            except duckdb.Error as exc:  # one unreadable product must not hide the others
                warnings.warn(f"no SQL view for {product}: {exc}", stacklevel=2)
        if lake.listdir(lake.path("_ledger")):
            src = _glob(lake, "_ledger", "*", "shard=*", "*.parquet")
            con.execute(
                f"CREATE VIEW {LEDGER_VIEW} AS SELECT * FROM read_parquet('{src}', hive_partitioning = false, "
                "union_by_name = true)"
            )
            views.append(LEDGER_VIEW)
        spend = []
        for use, source in VLM_USES.items():
            if use not in views:
                continue
            try:  # a product written before it asked a VLM has no such columns
                con.execute(f"SELECT * FROM ({source}) LIMIT 0")
            except duckdb.Error:
                continue
            spend.append(_SPEND.format(use=use, source=source))
        if spend:
            con.execute(f"CREATE VIEW {VLM_SPEND_VIEW} AS " + " UNION ALL ".join(spend))
            views.append(VLM_SPEND_VIEW)
    finally:
        con.close()
    os.replace(tmp, path)
    return views


def query(lake: Lake, sql: str, rebuild: bool = True):
    """Run a read-only query; returns a pyarrow Table."""
    if rebuild or not catalog_path(lake).exists():
        build_catalog(lake)
    con = _connect(lake, catalog_path(lake), read_only=True)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
