"""The ledger: what was computed for each (product, shard), from what, and whether it is stale.

A product of a shard is stale when its code version, its configuration hash, or the data version
of one of its inputs differs from the last computed record. Every attempt (computed, skipped,
failed) appends one record; ``_state`` keeps the latest computed record for a fast check.

Data versions are provenance hashes: sha256 over the output bytes, the code version, the config
hash and the input data versions. So an upstream change in code or config always reaches its
downstream products, even where the bytes happen to coincide.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from dynpose.storage.lake import Lake

LEDGER_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("product", pa.string()),
        ("action", pa.string()),  # computed | skipped | failed
        ("code_version", pa.string()),
        ("config_hash", pa.string()),
        ("input_versions", pa.string()),  # JSON {product: data_version}
        ("data_version", pa.string()),
        ("rows", pa.int64()),
        ("retry", pa.int64()),  # rows whose status asks for another try (e.g. a VLM fault): the shard stays stale
        ("wall_s", pa.float64()),
        ("cpu_s", pa.float64()),
        ("reason", pa.string()),  # why it was (re)computed, or why skipped/failed
        ("run_id", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def config_hash(settings) -> str:
    """Stable hash of a settings object (dataclass, dict or None)."""
    if settings is None:
        payload = {}
    elif is_dataclass(settings):
        payload = asdict(settings)
    else:
        payload = dict(settings)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_version(output: bytes, code_version: str, cfg_hash: str) -> str:
    """The version of a product's shard: its bytes, code and settings. Not its inputs' versions:
    an input that changed but left this output byte-identical (a retried VLM answer, a filter
    decision unchanged by a new score) leaves everything below it fresh (early cutoff)."""
    h = hashlib.sha256(output)
    h.update(json.dumps([code_version, cfg_hash]).encode())
    return h.hexdigest()[:16]


@dataclass
class LedgerRecord:
    shard: str
    product: str
    action: str
    code_version: str
    config_hash: str
    input_versions: dict[str, str] = field(default_factory=dict)
    data_version: str = ""
    rows: int = 0
    retry: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    reason: str = ""
    run_id: str = ""
    recorded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def to_row(self) -> dict:
        row = asdict(self)
        row["input_versions"] = json.dumps(self.input_versions, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict) -> "LedgerRecord":
        row = dict(row)
        row["retry"] = row.get("retry") or 0  # absent from records written before it existed
        row["input_versions"] = json.loads(row.get("input_versions") or "{}")
        if isinstance(row.get("recorded_at"), str):
            row["recorded_at"] = dt.datetime.fromisoformat(row["recorded_at"])
        return cls(**row)


class Ledger:
    def __init__(self, lake: Lake):
        self.lake = lake
        self.memo: dict = {}  # what a plan computes once and asks for per shard (settings hashes)

    def _state_path(self, product: str, shard: str) -> str:
        return self.lake.path("_state", product, f"{shard}.json")

    def state(self, product: str, shard: str) -> LedgerRecord | None:
        """The latest computed record of a product's shard, or None."""
        try:
            return LedgerRecord.from_row(self.lake.get_json(self._state_path(product, shard)))
        except FileNotFoundError:
            return None

    def states(self, product: str) -> dict[str, LedgerRecord]:
        out = {}
        for name in self.lake.listdir(self.lake.path("_state", product)):
            if name.endswith(".json"):
                rec = self.state(product, name[:-5])
                if rec:
                    out[rec.shard] = rec
        return out

    def append(self, rec: LedgerRecord) -> None:
        """Append a record; a computed one also becomes the shard's state (after the data is written)."""
        stamp = rec.recorded_at.strftime("%Y%m%dT%H%M%S%f")
        path = self.lake.path("_ledger", rec.product, f"shard={rec.shard}", f"{stamp}-{uuid.uuid4().hex[:8]}.parquet")
        table = pa.Table.from_pylist([rec.to_row()], schema=LEDGER_SCHEMA)
        self.lake.put_bytes(path, Lake.parquet_bytes(table))
        if rec.action == "computed":
            self.lake.put_json(self._state_path(rec.product, rec.shard), rec.to_row())

    def history(self, product: str | None = None, shard: str | None = None) -> pa.Table:
        tables = []
        products = [product] if product else self.lake.listdir(self.lake.path("_ledger"))
        for p in products:
            shard_dirs = [f"shard={shard}"] if shard else self.lake.listdir(self.lake.path("_ledger", p))
            for sd in shard_dirs:
                directory = self.lake.path("_ledger", p, sd)
                for name in self.lake.listdir(directory):
                    tables.append(pq.read_table(io.BytesIO(self.lake.get_bytes(f"{directory}/{name}"))))
        if not tables:
            return LEDGER_SCHEMA.empty_table()
        return pa.concat_tables(tables, promote_options="default").sort_by([("recorded_at", "ascending")])

    def run_records(self, run_id: str, products: list[str], shard: str) -> list[LedgerRecord]:
        """What one run did to these products' shard: the records it appended, in order."""
        out = []
        for product in products:
            table = self.history(product, shard)
            out += [LedgerRecord.from_row(r) for r in table.to_pylist() if r["run_id"] == run_id]
        return out

    def input_versions(self, deps: tuple[str, ...], shard: str) -> dict[str, str]:
        out = {}
        for dep in deps:
            rec = self.state(dep, shard)
            if rec is None:
                raise MissingInput(f"input '{dep}' has not been materialized for shard '{shard}'")
            out[dep] = rec.data_version
        return out

    def aggregate_input_versions(self, deps: tuple[str, ...]) -> dict[str, str]:
        """For a product over every shard: one version per input covering all its shards."""
        out = {}
        for dep in deps:
            states = self.states(dep)
            if not states:
                raise MissingInput(f"input '{dep}' has not been materialized for any shard")
            out[dep] = aggregate_version({s: r.data_version for s, r in states.items()})
        return out

    def output_exists(self, product: str, shard: str) -> bool:
        return self.lake.exists(self.lake.table_path(product, shard))

    def why_stale(
        self, product: str, shard: str, code_version: str, cfg_hash: str, inputs: dict[str, str]
    ) -> str | None:
        """None when the shard's product is fresh, else a short reason."""
        rec = self.state(product, shard)
        if rec is None:
            return "never computed"
        if not self.output_exists(product, shard):
            return "output missing"
        if rec.code_version != code_version:
            return f"code version {rec.code_version} -> {code_version}"
        if rec.config_hash != cfg_hash:
            return f"config changed ({rec.config_hash} -> {cfg_hash})"
        changed = sorted(k for k in inputs if rec.input_versions.get(k) != inputs[k])
        if changed:
            return "input changed: " + ", ".join(changed)
        if rec.retry:
            return f"{rec.retry} video(s) to retry"
        return None


class MissingInput(RuntimeError):
    pass


def aggregate_version(versions: dict[str, str]) -> str:
    """One version for an input over every shard: {shard: data_version} hashed in shard order."""
    return hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()[:16]


INDEX_DIR = "_state_index"
INDEX_FORMAT = 1


class LedgerSnapshot(Ledger):
    """The ledger as one plan reads it: every state of a product loaded once, together.

    A product's states come from one listing of ``_state/<product>/`` (names and signatures: size,
    mtime and inode locally, ETag on S3) plus the files that changed since the product's index
    ``_state_index/<product>.parquet`` (the records and the signatures they were read under); the
    others come from the index. The per-shard JSON stays the source of truth: the index is only a
    cache, rewritten (atomically, whole) when a listing differs from it, never needed, and a
    missing, corrupt or outdated index only means more files are read. Which table files exist
    comes from one listing per product too. Nothing is re-read within the snapshot: a plan that
    writes (materialize) reads the states it depends on afresh, through a new snapshot or a Ledger.
    """

    def __init__(self, lake: Lake, use_index: bool = True, timer: dict | None = None):
        super().__init__(lake)
        self.use_index = use_index
        self.timer = timer if timer is not None else {}  # phase -> seconds, for the scale benchmark
        self._states: dict[str, dict[str, LedgerRecord]] = {}  # product -> {file stem: record}
        self._tables: dict[str, set[str]] = {}
        self.files_read = 0

    def _time(self, phase: str, t0: float) -> None:
        self.timer[phase] = self.timer.get(phase, 0.0) + time.perf_counter() - t0

    def prefetch(self, products: list[str], workers: int = 32) -> None:
        """Load these products' states and table listings concurrently (S3 round trips overlap)."""
        todo = [p for p in products if p not in self._states or p not in self._tables]
        workers = 1 if self.lake.is_local else workers  # local reads are CPU-bound: threads only contend
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo) or 1))) as pool:
            list(pool.map(lambda p: (self._product_states(p), self._table_shards(p)), todo))

    def _index_path(self, product: str) -> str:
        return self.lake.path(INDEX_DIR, f"{product}.json")

    def _read_index(self, product: str) -> dict[str, tuple[str, LedgerRecord]]:
        """{state file name: (its signature, its record)}; {} when missing or unreadable."""
        try:
            index = json.loads(self.lake.get_bytes(self._index_path(product)))
            if index.get("format") != INDEX_FORMAT:
                return {}
            out = {}
            for name, (signature, row) in index["files"].items():
                rec = LedgerRecord(**row)
                rec.recorded_at = dt.datetime.fromisoformat(rec.recorded_at)
                out[name] = (signature, rec)
            return out
        except FileNotFoundError:
            return {}
        except Exception:  # a corrupt or foreign index is ignored: the states are read instead
            return {}

    def _write_index(self, product: str, signatures: dict[str, str], records: dict[str, LedgerRecord]) -> None:
        files = {}
        for name, sig in sorted(signatures.items()):
            rec = records.get(name[:-5])
            if rec is not None:
                files[name] = [sig, {**vars(rec), "recorded_at": rec.recorded_at.isoformat()}]
        # JSON, not Parquet: decoding 10,000 records from it is several times faster here.
        data = json.dumps({"format": INDEX_FORMAT, "files": files}).encode()
        try:
            self.lake.put_bytes(self._index_path(product), data)
        except OSError:  # a read-only lake still plans, only without the cache
            pass

    def _product_states(self, product: str) -> dict[str, LedgerRecord]:
        if product in self._states:
            return self._states[product]
        # Tens of thousands of new, acyclic objects: the cycle collector would rescan the growing
        # heap again and again (most of the time of a 10,000-shard load); it runs once after.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._load_states(product)
        finally:
            if enabled:
                gc.enable()

    def _load_states(self, product: str) -> dict[str, LedgerRecord]:
        t0 = time.perf_counter()
        directory = self.lake.path("_state", product)
        signatures = {n: s for n, s in self.lake.file_signatures(directory).items() if n.endswith(".json")}
        self._time("state listing", t0)
        t0 = time.perf_counter()
        index = self._read_index(product) if self.use_index else {}
        self._time("state index read", t0)
        records: dict[str, LedgerRecord] = {}
        changed = []
        for name, sig in signatures.items():
            hit = index.get(name)
            if hit is not None and hit[0] == sig:
                records[name[:-5]] = hit[1]
            else:
                changed.append(name)
        t0 = time.perf_counter()
        got = self.lake.get_many([f"{directory}/{n}" for n in changed])
        for name in changed:
            data = got.get(f"{directory}/{name}")
            if data is None:  # removed since the listing: absent, as a single read would find it
                signatures.pop(name)
                continue
            records[name[:-5]] = LedgerRecord.from_row(json.loads(data))
        self.files_read += len(got)
        self._time("state files read", t0)
        if self.use_index and (changed or len(index) != len(signatures)):
            t0 = time.perf_counter()
            self._write_index(product, signatures, records)
            self._time("state index write", t0)
        self._states[product] = records
        return records

    def _table_shards(self, product: str) -> set[str]:
        if product not in self._tables:
            t0 = time.perf_counter()
            self._tables[product] = self.lake.shards_with_table(product)
            self._time("table listing", t0)
        return self._tables[product]

    def append(self, rec: LedgerRecord) -> None:
        """Append, and keep the snapshot agreeing with what it wrote itself."""
        super().append(rec)
        if rec.action == "computed":
            if rec.product in self._states:
                self._states[rec.product][rec.shard] = rec
            if rec.product in self._tables and self.lake.exists(self.lake.table_path(rec.product, rec.shard)):
                self._tables[rec.product].add(rec.shard)

    def state(self, product: str, shard: str) -> LedgerRecord | None:
        return self._product_states(product).get(shard)

    def states(self, product: str) -> dict[str, LedgerRecord]:
        return {rec.shard: rec for rec in self._product_states(product).values()}

    def output_exists(self, product: str, shard: str) -> bool:
        return shard in self._table_shards(product)
