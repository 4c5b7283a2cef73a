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
import hashlib
import io
import json
import uuid
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
            h = hashlib.sha256(json.dumps(sorted((s, r.data_version) for s, r in states.items())).encode())
            out[dep] = h.hexdigest()[:16]
        return out

    def why_stale(
        self, product: str, shard: str, code_version: str, cfg_hash: str, inputs: dict[str, str]
    ) -> str | None:
        """None when the shard's product is fresh, else a short reason."""
        rec = self.state(product, shard)
        if rec is None:
            return "never computed"
        if not self.lake.exists(self.lake.table_path(product, shard)):
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
