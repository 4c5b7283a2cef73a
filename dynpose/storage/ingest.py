"""Ingest: find new video files in a source, identify them by content, assign them to new shards.

- A video's id is the sha256 of its bytes (first 20 hex digits): the same file ingested twice,
  under any name, is one video.
- New videos go to new shards of at most ``shard_size`` videos. A shard manifest is written once
  and never changed, so a video never moves and a shard's input never changes.
- Files already hashed are remembered by (uri, size, mtime) so a rescan reads only new files.
- Ground truth: a synthetic suite's ``manifest.json`` at the source root maps each video to its
  ground-truth folder (poses, depth, masks, correspondences); the catalog keeps that URI.
- Labels: a ``labels.csv`` at the source root (columns file,suitable,category,reason; the format of
  shared/data and of synthetic suites) labels the files it names. Captions: a sidecar ``<stem>.txt``
  or ``<stem>.json`` (key "caption") next to a video.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import posixpath
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dynpose.storage.lake import Lake, filesystem_for


@dataclass
class IngestSettings:
    shard_size: int = 64  # at most this many videos per new shard
    extensions: tuple[str, ...] = (
        ".mp4",
        ".mov",
        ".mkv",
        ".avi",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".ts",
        ".flv",
        ".wmv",
        ".3gp",
    )


SEEN_SCHEMA = pa.schema([("uri", pa.string()), ("size", pa.int64()), ("mtime", pa.string()), ("video_id", pa.string())])


def hash_stream(f, chunk: int = 8 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    while block := f.read(chunk):
        h.update(block)
    return h.hexdigest()[:20]


@dataclass
class SourceFile:
    uri: str
    size: int
    mtime: str


@dataclass
class IngestReport:
    new_shards: list[str] = field(default_factory=list)
    new_videos: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (uri, video_id it duplicates)
    already_seen: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (uri, message): could not be read at all

    def summary(self) -> str:
        return (
            f"{self.new_videos} new video(s) in {len(self.new_shards)} new shard(s)"
            f" [{', '.join(self.new_shards)}]; {len(self.duplicates)} duplicate(s);"
            f" {self.already_seen} already ingested; {len(self.errors)} unreadable source file(s)"
        )


def list_source(source: str, extensions: tuple[str, ...]) -> list[SourceFile]:
    """Video files under a local directory or s3:// prefix, sorted by URI."""
    fs, root = filesystem_for(source)
    proto = "s3://" if source.startswith("s3://") else ""
    out = []
    for path, info in sorted(fs.find(root, detail=True).items()):
        name = posixpath.basename(path)
        if name.startswith(".") or not name.lower().endswith(extensions) or info.get("type") == "directory":
            continue
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
        out.append(SourceFile(uri=proto + path, size=int(info.get("size") or 0), mtime=str(mtime)))
    return out


def _source_file(source: str, name: str):
    """(bytes of ``name`` at the source root or None, a function from a root-relative path to its uri)."""
    fs, root = filesystem_for(source)
    proto = "s3://" if source.startswith("s3://") else ""
    path = posixpath.join(root, name)
    data = fs.cat_file(path) if fs.exists(path) else None
    return data, lambda rel: proto + posixpath.normpath(posixpath.join(root, rel))


def read_labels(source: str) -> dict[str, dict]:
    """labels.csv at the source root -> {absolute uri: {suitable, category, reason}}."""
    data, uri = _source_file(source, "labels.csv")
    if data is None:
        return {}
    return {
        uri(row["file"]): {
            "suitable": int(row["suitable"]),
            "category": row.get("category") or None,
            "reason": row.get("reason") or None,
        }
        for row in csv.DictReader(io.StringIO(data.decode()))
    }


def read_ground_truth(source: str) -> dict[str, str]:
    """manifest.json of a synthetic suite at the source root -> {video uri: ground-truth folder uri}."""
    data, uri = _source_file(source, "manifest.json")
    try:
        manifest = json.loads(data) if data is not None else []
    except ValueError:
        return {}
    clips = manifest if isinstance(manifest, list) else manifest.get("clips", [])
    return {uri(c["video"]): uri(c["gt_dir"]) for c in clips if c.get("video") and c.get("gt_dir")}


def read_caption(source_fs, path: str) -> str | None:
    stem = posixpath.splitext(path)[0]
    for ext in (".txt", ".json"):
        side = stem + ext
        if source_fs.exists(side):
            text = source_fs.cat_file(side).decode("utf-8", errors="replace")
            if ext == ".json":
                try:
                    return str(json.loads(text).get("caption") or "") or None
                except (ValueError, AttributeError):
                    return None
            return text.strip() or None
    return None


class Registry:
    """Shard manifests and the seen-file index in the lake."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self._listed: list[str] = []
        self._manifests: dict[str, dict] = {}  # manifests never change: each is read once

    def shards(self) -> list[str]:
        self._listed = [n[:-5] for n in self.lake.listdir(self.lake.path("_shards")) if n.endswith(".json")]
        return list(self._listed)

    def manifest(self, shard: str) -> dict:
        if shard not in self._manifests and shard in self._listed:
            # Asked for one listed shard's manifest: fetch every listed one not read yet, together
            # (one concurrent batch on S3), as callers that list the shards go on to read them all.
            paths = {self.lake.path("_shards", f"{s}.json"): s for s in self._listed if s not in self._manifests}
            for path, data in self.lake.get_many(list(paths)).items():
                self._manifests[paths[path]] = json.loads(data)
        if shard in self._manifests:
            return self._manifests[shard]
        try:
            return self.lake.get_json(self.lake.path("_shards", f"{shard}.json"))
        except FileNotFoundError as exc:
            raise KeyError(f"no shard '{shard}' in {self.lake.url}") from exc

    def videos(self, shard: str) -> list[dict]:
        return self.manifest(shard)["videos"]

    def known_video_ids(self) -> set[str]:
        return {v["video_id"] for s in self.shards() for v in self.videos(s)}

    def seen(self) -> dict[tuple[str, int, str], str]:
        out = {}
        directory = self.lake.path("_ingest", "seen")
        for name in self.lake.listdir(directory):
            table = pq.read_table(io.BytesIO(self.lake.get_bytes(f"{directory}/{name}")))
            for row in table.to_pylist():
                out[(row["uri"], row["size"], row["mtime"])] = row["video_id"]
        return out

    def next_shard_numbers(self, count: int) -> list[str]:
        existing = [int(s[1:]) for s in self.shards() if s[1:].isdigit()]
        start = max(existing) + 1 if existing else 0
        return [f"s{n:05d}" for n in range(start, start + count)]


def _extensions(settings: IngestSettings) -> tuple[str, ...]:
    return tuple(e.lower() for e in settings.extensions)


def _unseen(files: list[SourceFile], registry: Registry) -> list[SourceFile]:
    seen = registry.seen()
    return [f for f in files if (f.uri, f.size, f.mtime) not in seen]


def unseen_files(source: str, lake: Lake, settings: IngestSettings | None = None) -> list[SourceFile]:
    """Source files not ingested yet (by uri, size and mtime): a listing, no hashing, so cheap."""
    return _unseen(list_source(source, _extensions(settings or IngestSettings())), Registry(lake))


def ingest(source: str, lake: Lake, settings: IngestSettings | None = None, progress=None) -> IngestReport:
    """Hash new files under ``source`` and write new shard manifests. Idempotent."""
    settings = settings or IngestSettings()
    registry = Registry(lake)
    report = IngestReport()
    listed = list_source(source, _extensions(settings))
    files = _unseen(listed, registry)
    report.already_seen = len(listed) - len(files)
    known = registry.known_video_ids()
    labels = read_labels(source)
    ground_truth = read_ground_truth(source)
    source_fs, _ = filesystem_for(source)
    fresh: list[dict] = []
    seen_rows: list[dict] = []
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    for i, f in enumerate(files):
        if progress:
            progress(i, len(files), f.uri)
        path = f.uri[5:] if f.uri.startswith("s3://") else f.uri
        try:
            with source_fs.open(path, "rb") as fh:
                vid = hash_stream(fh)
        except OSError as exc:
            report.errors.append((f.uri, str(exc)))
            continue
        seen_rows.append({"uri": f.uri, "size": f.size, "mtime": f.mtime, "video_id": vid})
        if vid in known:
            report.duplicates.append((f.uri, vid))
            continue
        known.add(vid)
        label = labels.get(f.uri, {})
        fresh.append(
            {
                "video_id": vid,
                "uri": f.uri,
                "size": f.size,
                "ingested_at": now,
                "caption": read_caption(source_fs, path),
                "label_suitable": label.get("suitable"),
                "label_category": label.get("category"),
                "label_reason": label.get("reason"),
                "ground_truth_uri": ground_truth.get(f.uri),
            }
        )
    if progress:
        progress(len(files), len(files), "")
    n = settings.shard_size
    chunks = [fresh[i : i + n] for i in range(0, len(fresh), n)]
    for shard, videos in zip(registry.next_shard_numbers(len(chunks)), chunks):
        # The manifest is the shard: written once, never modified.
        lake.put_json(
            lake.path("_shards", f"{shard}.json"),
            {"shard": shard, "created_at": now, "source": source, "videos": videos},
        )
        report.new_shards.append(shard)
        report.new_videos += len(videos)
    if seen_rows:
        # Recorded after the manifests: a crash in between only means those files get hashed again.
        table = pa.Table.from_pylist(seen_rows, schema=SEEN_SCHEMA)
        lake.put_bytes(
            lake.path("_ingest", "seen", f"{now.replace(':', '')}-{uuid.uuid4().hex[:8]}.parquet"),
            Lake.parquet_bytes(table),
        )
    return report
