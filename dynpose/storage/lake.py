"""The lake: one root URL (local path or s3://bucket/prefix), all I/O through fsspec.

Layout under the root:
    tables/<product>/shard=<key>/data.parquet   tabular products, one file per product per shard
    lance/                                      LanceDB tables for array products (masks, tracklets)
    _shards/<key>.json                          immutable shard manifests written by ingest
    _ingest/seen/<batch>.parquet                source files already hashed (uri, size, mtime, video_id)
    _ledger/<product>/shard=<key>/<time>-<id>.parquet   one ledger record per materialization attempt
    _state/<product>/<key>.json                 the latest computed ledger record (fast staleness check)
    catalog.duckdb                              derived DuckDB views (local lakes; S3 lakes keep it in a local cache)

Writes are atomic: a local file is written under a hidden temporary name and renamed into place; an
S3 object is written with a single PUT. Readers never see a partial file.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import time
import uuid
from functools import cached_property
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

TABLES = "tables"


def storage_options_from_env() -> dict:
    """S3 settings from the environment (never from files): endpoint, keys, region."""
    opts: dict = {}
    endpoint = os.environ.get("DYNPOSE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        opts["key"] = os.environ["AWS_ACCESS_KEY_ID"]
        opts["secret"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    return opts


def filesystem_for(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem and the root path inside it; S3 options come from the environment."""
    if url.startswith("s3://"):
        fs, path = fsspec.core.url_to_fs(
            url, **storage_options_from_env(), config_kwargs={"retries": {"max_attempts": 8, "mode": "standard"}}
        )
        return fs, path.rstrip("/")
    fs, path = fsspec.core.url_to_fs(url)
    return fs, str(Path(path).resolve())


class Lake:
    def __init__(self, url: str):
        self.url = url.rstrip("/") if url.startswith("s3://") else str(Path(url).resolve())
        self.fs, self.root = filesystem_for(url)
        self.is_local = not url.startswith("s3://")
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- paths -----------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """Full URL of a path under the root (what DuckDB and LanceDB are given)."""
        rel = posixpath.join(*parts) if parts else ""
        if self.is_local:
            return posixpath.join(self.root, rel) if rel else self.root
        return f"s3://{posixpath.join(self.root, rel)}" if rel else f"s3://{self.root}"

    def table_path(self, product: str, shard: str) -> str:
        return self.path(TABLES, product, f"shard={shard}", "data.parquet")

    # -- bytes -----------------------------------------------------------------------------
    def put_bytes(self, path: str, data: bytes) -> None:
        """Atomically publish ``data`` at ``path``."""
        if not self.is_local:
            self.fs.pipe_file(path, data)  # one PUT: the object appears whole or not at all
            return
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def listdir(self, path: str) -> list[str]:
        """Names (not paths) directly under ``path``, hidden temporaries excluded; [] if missing."""
        try:
            entries = self.fs.ls(path, detail=False, refresh=True) if not self.is_local else os.listdir(path)
        except FileNotFoundError:
            return []
        names = [posixpath.basename(str(e).rstrip("/")) for e in entries]
        return sorted(n for n in names if not n.startswith("."))

    def remove_stale_temporaries(self, directory: str, older_than_s: float = 3600) -> int:
        """Delete temp files left by killed writers (local lakes only; S3 PUTs leave none)."""
        if not self.is_local or not os.path.isdir(directory):
            return 0
        removed = 0
        for name in os.listdir(directory):
            full = os.path.join(directory, name)
            if name.startswith(".") and ".tmp-" in name and time.time() - os.path.getmtime(full) > older_than_s:
                os.remove(full)
                removed += 1
        return removed

    # -- JSON ------------------------------------------------------------------------------
    def put_json(self, path: str, obj) -> None:
        self.put_bytes(path, json.dumps(obj, sort_keys=True, indent=1, default=str).encode())

    def get_json(self, path: str):
        return json.loads(self.get_bytes(path))

    # -- Parquet ---------------------------------------------------------------------------
    @staticmethod
    def parquet_bytes(table: pa.Table) -> bytes:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return buf.getvalue()

    def read_table(self, product: str, shard: str) -> pa.Table:
        path = self.table_path(product, shard)
        try:
            return pq.read_table(io.BytesIO(self.get_bytes(path)))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"product '{product}' has no data for shard '{shard}' in {self.url}") from exc

    def read_product(self, product: str) -> pa.Table | None:
        """All shards of a product concatenated (None when nothing was written yet)."""
        tables = [self.read_table(product, s) for s in self.product_shards(product)]
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def product_shards(self, product: str) -> list[str]:
        out = []
        for name in self.listdir(self.path(TABLES, product)):
            if name.startswith("shard=") and self.exists(self.table_path(product, name[6:])):
                out.append(name[6:])
        return out

    def products(self) -> list[str]:
        return self.listdir(self.path(TABLES))

    # -- LanceDB ---------------------------------------------------------------------------
    @cached_property
    def lance(self):
        import lancedb

        if self.is_local:
            return lancedb.connect(self.path("lance"))
        opts = storage_options_from_env()
        storage = {"allow_http": "true"} if str(opts.get("endpoint_url", "")).startswith("http://") else {}
        if "endpoint_url" in opts:
            storage["endpoint"] = opts["endpoint_url"]
        if "key" in opts:
            storage.update(aws_access_key_id=opts["key"], aws_secret_access_key=opts["secret"])
        storage.setdefault("region", os.environ.get("AWS_REGION", "us-east-1"))
        return lancedb.connect(self.uri("lance"), storage_options=storage)

    def replace_lance_shard(self, table_name: str, shard: str, rows: pa.Table) -> None:
        """Rewrite one shard of a LanceDB table: delete by filter, then append."""
        db = self.lance
        if table_name in db.table_names():
            tbl = db.open_table(table_name)
            if set(rows.column_names) - set(tbl.schema.names):
                # A new product version added columns: rewrite the table once, older shards get nulls.
                others = tbl.search().where(f"shard != '{shard}'").limit(None).to_arrow()
                merged = pa.concat_tables([others, rows], promote_options="permissive") if others.num_rows else rows
                db.create_table(table_name, merged, mode="overwrite")
                return
            tbl.delete(f"shard = '{shard}'")
            if rows.num_rows:
                tbl.add(rows)
        elif rows.num_rows:
            db.create_table(table_name, rows)

    def read_lance_shard(self, table_name: str, shard: str) -> pa.Table | None:
        db = self.lance
        if table_name not in db.table_names():
            return None
        return db.open_table(table_name).search().where(f"shard = '{shard}'").limit(None).to_arrow()
