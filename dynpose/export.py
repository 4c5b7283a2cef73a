"""Export a quality-filtered subset of the lake to a folder or an s3:// prefix (docs/export.md).

Three formats:

- ``dynpose``: the DynPose-100K release layout, ``cameras/<video_id>.pkl`` exactly as
  :func:`dynpose.domain.camera.write_cameras_pkl` writes it and ``metadata.csv``;
- ``parquet``: the lake's own product rows (and LanceDB arrays) of the selected videos, laid out
  like the lake: ``tables/<product>/shard=<key>/data.parquet``, ``arrays/<table>/shard=<key>/...``;
- ``webdataset``: one tar per lake shard, ``shards/<key>.tar``, one sample per video (poses,
  intrinsics, the cameras pickle, metadata, the masks summary; the sampled frames as JPEGs with
  ``with_frames``).

Every export writes ``manifest.json``: the selection, counts, the sha256 of every file and the data
versions of the lake products it came from. The unit of work is the lake shard: a shard's files are
rewritten only when its selected videos or the data versions of the products they come from changed
(a checkpoint per shard under ``_export/``), so exporting again after new videos arrive writes only
the new shards' files (and ``metadata.csv``), and a killed export resumes at the shard it was on.
Every file is published whole: a local file is written under a hidden temporary name and renamed, an
S3 object is one PUT (or one multipart upload) of a complete file.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import posixpath
import tarfile
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dynpose.domain.camera import write_cameras_pkl
from dynpose.domain.catalog import FrameSettings, open_source
from dynpose.domain.filters.cascade import FILTERS
from dynpose.domain.poses import pose_from_row
from dynpose.domain.video import sample_frames
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import Ledger
from dynpose.storage.sql import query

EXPORT_VERSION = "1"  # bump when the bytes of an exported file change for the same lake data
FORMATS = ("dynpose", "parquet", "webdataset")
TIERS = ("tier1", "tier2", "tier3", "tier4", "failed")
DEFAULT_TIERS = ("tier1", "tier2", "tier3")
MANIFEST = "manifest.json"
STATE = "_export"  # per-shard checkpoints under the destination
OURS = "ours"

# One row per video with our poses and a quality verdict: what the thresholds and ``--where`` see.
# (name, SQL, what) -- docs/export.md lists the same columns.
CANDIDATE_COLUMNS: list[tuple[str, str, str]] = [
    ("video_id", "c.video_id", "sha256 of the video's bytes"),
    ("shard", "c.shard", "lake shard key"),
    ("source_uri", "c.source_uri", "where the video was ingested from"),
    ("caption", "c.caption", "caption (sidecar .txt/.json), may be null"),
    ("label_category", "c.label_category", "labels.csv category, may be null"),
    ("duration_s", "c.duration_s", "source duration, seconds"),
    ("source_fps", "c.fps", "source frame rate"),
    ("source_width", "c.width", "source width, pixels"),
    ("source_height", "c.height", "source height, pixels"),
    ("filter_score", "d.score", "the cascade's mean score in [0, 1] (filter_decisions.score)"),
    ("kept", "d.kept", "the cascade kept the video"),
    ("stage_left", "d.stage_left", "the cascade stage that rejected it, or null"),
    *[(f"{n}_score", f'd."{n}_score"', f"filter_{n} score") for n in FILTERS],
    ("pose_status", "p.status", "camera_poses status (ok, low_registration, sfm_failed, ...)"),
    ("n_frames", "p.n_frames", "sampled frames (12 fps)"),
    ("width", "p.width", "width of the sampled frames, pixels"),
    ("height", "p.height", "height of the sampled frames, pixels"),
    ("fx", "p.fx", "focal length x, pixels of the sampled frames"),
    ("fy", "p.fy", "focal length y"),
    ("num_points", "p.num_points", "3-D points of the reconstruction"),
    ("registered_ratio", "q.registered_ratio", "registered share of the sampled frames"),
    ("reprojection_error", "q.reprojection_error", "mean reprojection error, pixels"),
    ("focal_plausible", "q.focal_plausible", "focal within 0.25-5x the long side"),
    ("tier", "q.tier", "tier1 .. tier4, or failed"),
]
CANDIDATES_SQL = (
    "SELECT "
    + ", ".join(f"{sql} AS {name}" for name, sql, _ in CANDIDATE_COLUMNS)
    + f" FROM clip_catalog c JOIN camera_poses p ON p.video_id = c.video_id AND p.method = '{OURS}'"
    " JOIN pose_quality q ON q.video_id = c.video_id JOIN filter_decisions d ON d.video_id = c.video_id"
)
# Products each format reads (their data versions key a shard's files).
FORMAT_PRODUCTS = {
    "dynpose": ("clip_catalog", "filter_decisions", "camera_poses", "pose_quality"),
    "webdataset": ("clip_catalog", "filter_decisions", "camera_poses", "pose_quality", "dynamic_masks"),
    "parquet": (),  # every per-shard product the lake holds
}
LANCE_TABLES = ("dynamic_masks", "tracklets")
METADATA_COLUMNS = [
    "video_id",
    "source_uri",
    "caption",
    "duration_s",
    "source_fps",
    "source_width",
    "source_height",
    "n_frames",
    "width",
    "height",
    "filter_score",
    *[f"{n}_score" for n in FILTERS],
    "registered_ratio",
    "reprojection_error",
    "tier",
]
JPEG_QUALITY = 95


class ExportError(ValueError):
    """A selection or destination the export cannot use; the message says why."""


@dataclass(frozen=True)
class Selection:
    """Which videos: thresholds (None: no threshold) and an optional SQL expression over CANDIDATE_COLUMNS."""

    min_filter_score: float | None = None
    tiers: tuple[str, ...] | None = DEFAULT_TIERS  # None: any tier
    min_registered: float | None = 0.8
    where: str | None = None

    def predicate(self) -> str:
        parts = []
        if self.min_filter_score is not None:
            parts.append(f"filter_score >= {float(self.min_filter_score)!r}")
        if self.tiers is not None:
            unknown = sorted(set(self.tiers) - set(TIERS))
            if unknown or not self.tiers:
                raise ExportError(f"unknown tier(s) {', '.join(unknown) or '(none given)'}: use {', '.join(TIERS)}")
            parts.append("tier IN (" + ", ".join(f"'{t}'" for t in self.tiers) + ")")
        if self.min_registered is not None:
            parts.append(f"registered_ratio >= {float(self.min_registered)!r}")
        if self.where:
            check_where(self.where)
            parts.append(f"({self.where})")
        return " AND ".join(parts) or "true"

    def describe(self) -> dict:
        out = asdict(self)
        out["tiers"] = list(self.tiers) if self.tiers is not None else None
        out["sql"] = f"SELECT * FROM candidates WHERE {self.predicate()}"
        return out


def check_where(where: str) -> None:
    """Accept only one boolean expression over the candidate columns; raise ExportError otherwise.

    The expression is parsed as the WHERE clause of ``SELECT * FROM candidates WHERE (...)``: it must
    leave that statement one plain SELECT (no second statement, set operation, CTE, grouping or
    limit). It is then evaluated on an in-memory copy of the candidates with file access disabled,
    so it can name only those columns and cannot read or write anything.
    """
    if not where or not where.strip():
        raise ExportError("--where is empty")
    sql = f"SELECT * FROM candidates WHERE ({where})"
    con = duckdb.connect(":memory:")
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    finally:
        con.close()
    if tree.get("error"):
        raise ExportError(f"--where is not a SQL expression: {tree.get('error_message')}")
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    plain = (
        node.get("type") == "SELECT_NODE"
        and (node.get("from_table") or {}).get("table_name") == "candidates"
        and not node.get("modifiers")
        and not node.get("group_expressions")
        and node.get("having") is None
        and not (node.get("cte_map") or {}).get("map")
        and [e.get("type") for e in node.get("select_list", [])] == ["STAR"]
    )
    if not plain:
        raise ExportError(f"--where must be one read-only boolean expression over the candidate columns, not {where!r}")


def candidates(lake: Lake) -> pa.Table:
    """Every video with our poses and a quality verdict, from the lake's SQL views."""
    try:
        return query(lake, CANDIDATES_SQL)
    except duckdb.Error as exc:
        raise ExportError(
            f"the lake has no annotated videos to export ({str(exc).splitlines()[0]}); materialize clip_catalog, "
            "filter_decisions, camera_poses and pose_quality first"
        ) from exc


def select(lake: Lake, selection: Selection) -> pa.Table:
    """The selected candidates, ordered by shard and video id."""
    pred = selection.predicate()  # validates before the lake is read
    table = candidates(lake)
    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        con.register("candidates", table)
        return con.sql(f"SELECT * FROM candidates WHERE {pred} ORDER BY shard, video_id").fetch_arrow_table()
    except duckdb.Error as exc:
        raise ExportError(f"--where could not be evaluated: {exc}") from exc
    finally:
        con.close()


# -- the destination -------------------------------------------------------------------------------


class Destination:
    """Where an export goes: a local folder or an s3:// prefix; every file published whole."""

    def __init__(self, url: str):
        self.store = Lake(url)  # the lake's filesystem handling and atomic put_bytes
        self.url = self.store.url

    def path(self, rel: str) -> str:
        return self.store.path(rel)

    def uri(self, rel: str) -> str:
        return self.store.uri(rel)

    def listing(self) -> dict[str, int]:
        """Relative path -> size of every visible file (hidden temporaries excluded)."""
        fs = self.store.fs
        fs.invalidate_cache()
        try:
            found = fs.find(self.store.root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for path, info in found.items():
            rel = posixpath.relpath(str(path), self.store.root)
            if info.get("type", "file") == "file" and not any(p.startswith(".") for p in rel.split("/")):
                out[rel] = int(info.get("size") or 0)
        return out

    def remove_temporaries(self) -> int:
        """Hidden temporaries a killed local export left (S3 never shows a partial object)."""
        if not self.store.is_local:
            return 0
        removed = 0
        for directory, _dirs, names in os.walk(self.store.root):
            for name in names:
                if name.startswith(".") and ".tmp-" in name:
                    os.remove(os.path.join(directory, name))
                    removed += 1
        return removed

    def put_bytes(self, rel: str, data: bytes) -> None:
        self.store.put_bytes(self.path(rel), data)

    def temporary(self, rel: str) -> str:
        """A local path to build a large file in before :meth:`publish` (beside it on local disk)."""
        if self.store.is_local:
            directory, name = os.path.split(self.path(rel))
            os.makedirs(directory, exist_ok=True)
            return os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
        fd, tmp = tempfile.mkstemp(prefix=".dynpose-export-", suffix=".tmp-" + posixpath.basename(rel))
        os.close(fd)
        return tmp

    def publish(self, tmp: str, rel: str) -> None:
        """Make a finished temporary file visible at ``rel`` (rename locally, one upload to S3)."""
        if self.store.is_local:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path(rel))
        else:
            try:
                self.store.fs.put_file(tmp, self.path(rel))
            finally:
                os.remove(tmp)

    def remove(self, rel: str) -> None:
        try:
            self.store.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass

    def read_json(self, rel: str) -> dict | None:
        try:
            return json.loads(self.store.get_bytes(self.path(rel)))
        except FileNotFoundError:
            return None


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, default=_plain).encode()


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and v != v:
        return None
    return str(v)


# -- per-video encodings ---------------------------------------------------------------------------


def cameras_pkl_bytes(row: dict) -> bytes:
    """The cameras pickle of a camera_poses row, exactly as write_cameras_pkl writes it."""
    fd, tmp = tempfile.mkstemp(prefix=".dynpose-cameras-", suffix=".pkl")
    os.close(fd)
    try:
        write_cameras_pkl(tmp, pose_from_row(row))
        with open(tmp, "rb") as f:
            return f.read()
    finally:
        os.remove(tmp)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _jpeg(frame: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_frames(source_uri: str, frames: FrameSettings, expected_timestamps) -> np.ndarray:
    """The sampled frames of a video (the sampled_frames settings), checked against its poses' timestamps."""
    with open_source(source_uri) as fh:
        sampled = sample_frames(fh, fps=frames.fps, max_side=frames.max_side)
    expected = np.asarray(expected_timestamps, np.float64)
    if len(sampled) != len(expected) or not np.allclose(sampled.timestamps, expected, atol=1e-6):
        raise ExportError(
            f"{source_uri}: decoding gave {len(sampled)} frames, its poses have {len(expected)}: the source or "
            "the sampled_frames settings changed since the poses were computed"
        )
    return sampled.frames


def sample_members(cand: dict, pose: dict, masks: dict | None, frames: np.ndarray | None) -> list[tuple[str, bytes]]:
    """The tar members of one video's webdataset sample (key: the video id)."""
    key = cand["video_id"]
    result = pose_from_row(pose)
    k = result.intrinsics
    n = len(result.timestamps)
    meta = {name: cand.get(name) for name in METADATA_COLUMNS}
    meta.update(
        pose_status=pose["status"],
        intrinsics={"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height},
        frame_index=list(pose["frame_index"]),
        timestamps=[float(t) for t in result.timestamps],
        registered=[bool(r) for r in result.registered],
        frames=0 if frames is None else len(frames),
    )
    members = [
        (f"{key}.json", _json_bytes(meta)),
        (f"{key}.cameras.pkl", cameras_pkl_bytes(pose)),
        (f"{key}.poses.npy", _npy(np.asarray(result.poses_w2c, np.float64))),
        (f"{key}.intrinsics.npy", _npy(np.tile([k.fx, k.fy, k.cx, k.cy], (n, 1)).astype(np.float64))),
        (f"{key}.timestamps.npy", _npy(np.asarray(result.timestamps, np.float64))),
        (f"{key}.registered.npy", _npy(np.asarray(result.registered, bool))),
        (f"{key}.masks.json", _json_bytes(masks or {})),
    ]
    for i, frame in enumerate(frames if frames is not None else ()):
        members.append((f"{key}.frame_{i:05d}.jpg", _jpeg(frame)))
    return members


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed: the same data gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def metadata_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(METADATA_COLUMNS)
    for r in sorted(rows, key=lambda r: r["video_id"]):
        writer.writerow(["" if r.get(c) is None else r[c] for c in METADATA_COLUMNS])
    return out.getvalue().encode()


# -- the export ------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    dest: str
    format: str
    manifest: str  # URL of manifest.json
    videos: int
    shards: int
    files: int
    written: list[str] = field(default_factory=list)  # files (re)written by this run, relative paths
    removed: list[str] = field(default_factory=list)  # files of videos no longer selected
    bytes_written: int = 0
    shards_written: int = 0
    unchanged: int = 0  # files of the export left as they were
    tiers: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def videos_per_s(self) -> float:
        return self.videos / self.seconds if self.seconds else float("nan")

    def rows(self) -> list[dict]:
        return [{"tier": t, "videos": n} for t, n in sorted(self.tiers.items())]

    def summary(self) -> str:
        return (
            f"{self.format} export of {self.videos} video(s) in {self.shards} shard(s) to {self.dest}: "
            f"{len(self.written)} file(s) written ({self.bytes_written / 2**20:.1f} MiB, "
            f"{self.shards_written} shard(s)), {self.unchanged} unchanged, {len(self.removed)} removed "
            f"in {self.seconds:.1f} s"
        )


def _shard_products(lake: Lake, fmt: str, shard: str) -> tuple[str, ...]:
    if FORMAT_PRODUCTS[fmt]:
        return FORMAT_PRODUCTS[fmt]
    return tuple(p for p in lake.products() if lake.exists(lake.table_path(p, shard)))


def _data_versions(ledger: Ledger, products, shard: str) -> dict[str, str | None]:
    out = {}
    for p in products:
        rec = ledger.state(p, shard)
        out[p] = rec.data_version if rec else None
    return out


def _rows_of(table: pa.Table | None, ids: list[str]) -> pa.Table | None:
    if table is None or "video_id" not in table.column_names:
        return None
    return table.filter(pc.is_in(table["video_id"], value_set=pa.array(ids, pa.string())))


def export(
    lake: Lake | str,
    dest: str,
    selection: Selection | None = None,
    fmt: str = "dynpose",
    with_frames: bool = False,
    frames: FrameSettings | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ExportReport:
    """Export the selected videos to ``dest`` (a folder or s3:// prefix); see the module docstring."""
    t0 = time.perf_counter()
    lake = Lake(lake) if isinstance(lake, str) else lake
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    if with_frames and fmt != "webdataset":
        raise ExportError("--with-frames applies to the webdataset format only")
    frames = frames or FrameSettings()
    selection = selection or Selection()
    selected = select(lake, selection).to_pylist()
    out = Destination(dest)
    previous = out.read_json(MANIFEST)
    if previous and previous.get("format") != fmt:
        raise ExportError(f"{out.url} holds a {previous.get('format')} export: export {fmt} to another destination")
    out.remove_temporaries()
    existing = out.listing()
    ledger = Ledger(lake)
    by_shard: dict[str, list[dict]] = {}
    for r in selected:
        by_shard.setdefault(r["shard"], []).append(r)

    report = ExportReport(out.url, fmt, out.uri(MANIFEST), len(selected), len(by_shard), 0)
    report.tiers = {t: sum(r["tier"] == t for r in selected) for t in sorted({r["tier"] for r in selected})}
    files: dict[str, dict] = {}
    shard_entries: dict[str, dict] = {}
    done = 0
    for shard, rows in by_shard.items():
        ids = [r["video_id"] for r in rows]
        products = _shard_products(lake, fmt, shard)
        versions = _data_versions(ledger, products, shard)
        spec = [EXPORT_VERSION, fmt, ids, versions, with_frames, asdict(frames) if with_frames else None]
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        state = out.read_json(f"{STATE}/{shard}.json")
        fresh = (
            state is not None
            and state.get("key") == key
            and all(existing.get(rel) == f["bytes"] for rel, f in state["files"].items())
        )
        if not fresh:
            written = _write_shard(lake, out, fmt, shard, rows, with_frames, frames, progress, done, len(selected))
            for rel in sorted(set(state["files"]) - set(written) if state else ()):
                out.remove(rel)
                report.removed.append(rel)
            state = {"shard": shard, "key": key, "videos": ids, "data_versions": versions, "files": written}
            out.put_bytes(f"{STATE}/{shard}.json", _json_bytes(state))
            report.written += sorted(written)
            report.bytes_written += sum(f["bytes"] for f in written.values())
            report.shards_written += 1
        files.update(state["files"])
        shard_entries[shard] = {k: state[k] for k in ("key", "videos", "data_versions")}
        done += len(rows)
        if progress:
            progress(done, len(selected), shard)

    # Shards that no longer hold a selected video: their files go.
    for name in sorted({rel.split("/")[1] for rel in existing if rel.startswith(f"{STATE}/")}):
        shard = name.removesuffix(".json")
        if shard in by_shard:
            continue
        state = out.read_json(f"{STATE}/{name}") or {"files": {}}
        for rel in sorted(state["files"]):
            out.remove(rel)
            report.removed.append(rel)
        out.remove(f"{STATE}/{name}")

    if fmt == "dynpose":
        data = metadata_csv(selected)
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "videos": len(selected)}
        old = (previous or {}).get("files", {}).get("metadata.csv")
        if old != entry or existing.get("metadata.csv") != len(data):
            out.put_bytes("metadata.csv", data)
            report.written.append("metadata.csv")
            report.bytes_written += len(data)
        files["metadata.csv"] = entry

    manifest = {
        "dynpose_export": EXPORT_VERSION,
        "format": fmt,
        "lake": lake.url,
        "selection": selection.describe(),
        "with_frames": with_frames,
        "frames": asdict(frames),
        "counts": {
            "videos": len(selected),
            "shards": len(by_shard),
            "files": len(files),
            "bytes": sum(f["bytes"] for f in files.values()),
            "tiers": report.tiers,
        },
        "videos": [r["video_id"] for r in selected],
        "shards": shard_entries,
        "data_versions": {
            p: {s: e["data_versions"][p] for s, e in shard_entries.items() if p in e["data_versions"]}
            for p in sorted({p for e in shard_entries.values() for p in e["data_versions"]})
        },
        "files": dict(sorted(files.items())),
    }
    manifest = json.loads(_json_bytes(manifest))  # as it reads back, to compare with the previous one
    unchanged = previous is not None and {k: v for k, v in previous.items() if k != "exported_at"} == manifest
    if not unchanged:
        manifest["exported_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        out.put_bytes(MANIFEST, _json_bytes(manifest))
        report.written.append(MANIFEST)
    report.files = len(files)
    report.unchanged = len(set(files) - set(report.written))
    report.seconds = time.perf_counter() - t0
    return report


def _write_shard(lake, out, fmt, shard, rows, with_frames, frames, progress, done, total) -> dict[str, dict]:
    """Write one shard's files; returns {relative path: {sha256, bytes, ...}}."""
    ids = [r["video_id"] for r in rows]
    written: dict[str, dict] = {}

    def put(rel: str, data: bytes, **extra) -> None:
        out.put_bytes(rel, data)
        written[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "shard": shard, **extra}

    if fmt == "parquet":
        for product in _shard_products(lake, fmt, shard):
            part = _rows_of(lake.read_table(product, shard), ids)
            if part is not None:
                put(f"tables/{product}/shard={shard}/data.parquet", Lake.parquet_bytes(part), rows=part.num_rows)
        for name in LANCE_TABLES:
            part = _rows_of(lake.read_lance_shard(name, shard), ids)
            if part is not None and part.num_rows:
                put(f"arrays/{name}/shard={shard}/data.parquet", Lake.parquet_bytes(part), rows=part.num_rows)
        return written

    poses = {
        r["video_id"]: r
        for r in _rows_of(lake.read_table("camera_poses", shard), ids).to_pylist()
        if r["method"] == OURS
    }
    if fmt == "dynpose":
        for i, r in enumerate(rows):
            put(f"cameras/{r['video_id']}.pkl", cameras_pkl_bytes(poses[r["video_id"]]), video_id=r["video_id"])
            if progress:
                progress(done + i + 1, total, r["video_id"])
        return written

    masks = {
        r["video_id"]: r for r in (_rows_of(lake.read_table("dynamic_masks", shard), ids) or pa.table({})).to_pylist()
    }
    rel = f"shards/{shard}.tar"
    tmp = out.temporary(rel)
    members = 0
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, r in enumerate(rows):
                pose = poses[r["video_id"]]
                pixels = decode_frames(r["source_uri"], frames, pose["timestamp_s"]) if with_frames else None
                for name, data in sample_members(r, pose, masks.get(r["video_id"]), pixels):
                    _add(tar, name, data)
                    members += 1
                if progress:
                    progress(done + i + 1, total, r["video_id"])
        entry = {"sha256": _sha256_file(tmp), "bytes": os.path.getsize(tmp), "shard": shard}
        out.publish(tmp, rel)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    written[rel] = {**entry, "samples": ids, "members": members}
    return written


def parse_tiers(text: str | None) -> tuple[str, ...] | None:
    """``tier1,tier2`` -> ('tier1', 'tier2'); ``any`` or ``all`` -> None (every tier, failed included)."""
    if text is None:
        return DEFAULT_TIERS
    if text.strip().lower() in ("any", "all"):
        return None
    return tuple(t.strip() for t in text.split(",") if t.strip())
