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
