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


def s3_client_settings() -> dict:
    """Retries and timeouts of every S3 request, from the environment (docs/s3.md).

    ``DYNPOSE_S3_RETRIES`` (attempts per request, default 8: a restarting server has about 30 s to
    come back), ``DYNPOSE_S3_CONNECT_TIMEOUT`` (s, default 5) and ``DYNPOSE_S3_READ_TIMEOUT`` (s,
    default 60). The same bounds apply to the s3fs requests and to LanceDB's own client.
    """

    def number(name: str, default: float) -> float:
        raw = os.environ.get(name, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError as exc:
            raise ValueError(f"{name} must be a number, got {raw!r}") from exc
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {raw!r}")
        return value

    return {
        "attempts": int(number("DYNPOSE_S3_RETRIES", 8)),
        "connect_timeout": number("DYNPOSE_S3_CONNECT_TIMEOUT", 5),
        "read_timeout": number("DYNPOSE_S3_READ_TIMEOUT", 60),
    }


class StorageUnavailable(RuntimeError):
    """The object store did not answer (refused, timed out, reset) after every retry: a fault of the
    storage, never of a video. Not an OSError, so no caller mistakes it for a missing or unreadable file."""


# What an unreachable endpoint raises: botocore and aiohttp connection errors, timeouts, and the
# messages of LanceDB's (Rust) client, which reach Python as plain OSError/RuntimeError text.
_UNREACHABLE_NAMES = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ClientOSError",
    "FSTimeoutError",
}
_UNREACHABLE_TEXT = ("error sending request", "connection refused", "connection reset", "tcp connect error")


def storage_unavailable(exc: BaseException, url: str = "") -> StorageUnavailable | None:
    """A one-line StorageUnavailable naming the endpoint when ``exc`` (or its cause) says the object
    store could not be reached; None for any other error."""
    if isinstance(exc, StorageUnavailable):
        return exc
    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        names = {t.__name__ for t in type(cur).__mro__}
        text = str(cur).lower()
        refused = isinstance(cur, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError))
        if names & _UNREACHABLE_NAMES or refused or any(t in text for t in _UNREACHABLE_TEXT):
            endpoint = storage_options_from_env().get("endpoint_url") or "the S3 endpoint"
            first = str(cur).strip().splitlines()[0][:300] if str(cur).strip() else type(cur).__name__
            where = f" ({url})" if url else ""
            return StorageUnavailable(f"S3 storage at {endpoint} is unavailable{where}: {first}")
        cur = cur.__cause__ or cur.__context__
    return None


def filesystem_for(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem and the root path inside it; S3 options come from the environment."""
    if url.startswith("s3://"):
        client = s3_client_settings()
        config = {
            "retries": {"max_attempts": client["attempts"], "mode": "standard"},
            "connect_timeout": client["connect_timeout"],
            "read_timeout": client["read_timeout"],
        }
        fs, path = fsspec.core.url_to_fs(url, **storage_options_from_env(), config_kwargs=config)
        # botocore retries each request (with backoff) already; s3fs's own loop around it would
        # multiply the attempts (5 x 8 by default: minutes before a dead endpoint is reported).
        fs.retries = 2
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
        client = s3_client_settings()  # LanceDB's client retries for 3 minutes by default
        storage.update(
            client_max_retries=str(client["attempts"]),
            client_retry_timeout=str(max(1, int(client["attempts"] * client["connect_timeout"]))),
            connect_timeout=f"{client['connect_timeout']:g}s",
            timeout=f"{client['read_timeout']:g}s",
        )
        return lancedb.connect(self.uri("lance"), storage_options=storage)

    def replace_lance_shard(self, table_name: str, shard: str, rows: pa.Table) -> None:
        """Rewrite one shard of a LanceDB table in one commit where the rows have a unique key (a
        crash leaves the shard's old rows or its new ones, never neither); else delete, then append."""
        db = self.lance
        if table_name in db.table_names():
            tbl = db.open_table(table_name)
            if set(rows.column_names) - set(tbl.schema.names):
                # A new product version added columns: rewrite the table once, older shards get nulls.
                others = tbl.search().where(f"shard != '{shard}'").limit(None).to_arrow()
                merged = pa.concat_tables([others, rows], promote_options="permissive") if others.num_rows else rows
                db.create_table(table_name, merged, mode="overwrite")
                return
            keys = [c for c in ("shard", "video_id", "frame_index", "window") if c in rows.column_names]
            if (
                rows.num_rows
                and keys[:2] == ["shard", "video_id"]
                and set(rows.column("shard").to_pylist()) == {shard}
                and set(rows.column_names) == set(tbl.schema.names)  # no column left to keep stale values
                and rows.group_by(keys).aggregate([]).num_rows == rows.num_rows
            ):
                # Keyed by shard too: the merge matches (and deletes) this shard's rows, no other's.
                (
                    tbl.merge_insert(keys)
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .when_not_matched_by_source_delete(f"shard = '{shard}'")
                    .execute(rows)
                )
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

    # -- bulk reads (planning over many shards) ---------------------------------------------
    def file_signatures(self, directory: str) -> dict[str, str]:
        """{name: signature} of the files directly under ``directory`` (hidden ones excluded), from
        one listing: size, mtime and inode locally, size and ETag on S3 (a content hash for a
        single PUT). A file rewritten gets a new signature. {} if the directory is missing."""
        out: dict[str, str] = {}
        if self.is_local:
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        if entry.name.startswith(".") or not entry.is_file():
                            continue
                        st = entry.stat()
                        out[entry.name] = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
            except FileNotFoundError:
                pass
            return out
        try:
            entries = self.fs.ls(directory, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        for e in entries:
            name = posixpath.basename(str(e["name"]).rstrip("/"))
            if e.get("type") == "directory" or name.startswith("."):
                continue
            out[name] = f"{e.get('size')}:{str(e.get('ETag') or e.get('LastModified') or '').strip(chr(34))}"
        return out

    def get_many(self, paths: list[str]) -> dict[str, bytes]:
        """{path: bytes} of the files that exist among ``paths``; S3 fetches them concurrently."""
        if not paths:
            return {}
        if self.is_local:
            out = {}
            for p in paths:
                try:
                    with open(p, "rb") as f:
                        out[p] = f.read()
                except FileNotFoundError:
                    pass
            return out
        got = self.fs.cat(list(paths), on_error="omit")
        by_key = {str(k).split("://", 1)[-1]: v for k, v in got.items() if isinstance(v, bytes)}
        return {p: by_key[p.split("://", 1)[-1]] for p in paths if p.split("://", 1)[-1] in by_key}

    def shards_with_table(self, product: str) -> set[str]:
        """The shards whose ``data.parquet`` of ``product`` exists: one listing (a flat one on S3)."""
        base = self.path(TABLES, product)
        if self.is_local:
            out = set()
            for name in self.listdir(base):
                if name.startswith("shard=") and os.path.isfile(os.path.join(base, name, "data.parquet")):
                    out.add(name[6:])
            return out
        try:
            found = self.fs.find(base, detail=False)
        except FileNotFoundError:
            return set()
        finally:
            self.fs.invalidate_cache(base)  # the flat listing must not answer later exists() calls
        out = set()
        prefix = base.rstrip("/") + "/"
        for path in found:
            rel = str(path).split("://", 1)[-1][len(prefix) :] if str(path).startswith(prefix) else ""
            parts = rel.split("/")
            if len(parts) == 2 and parts[0].startswith("shard=") and parts[1] == "data.parquet":
                out.add(parts[0][6:])
        return out
