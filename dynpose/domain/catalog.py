"""The clip catalog and the sampled-frame index: one probe per video, never failing the shard."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from dynpose.domain.video import VideoError, frame_times, probe, select_sample_indices
from dynpose.storage.lake import filesystem_for


@dataclass
class CatalogSettings:
    min_frames: int = 12  # fewer frames than this: too_short
    min_duration_s: float = 0.5
    max_width: int = 7680  # larger than 8K on either side: too_large
    max_height: int = 7680
    max_bytes: int = 8 * 1024**3


@dataclass
class FrameSettings:
    fps: float = 12.0  # the paper annotates at 12 fps
    max_side: int = 854  # frames are resized so the longer side is at most this (480p-class work size)


CATALOG_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("source_uri", pa.string()),
        ("byte_size", pa.int64()),
        ("container", pa.string()),
        ("codec", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("fps", pa.float64()),
        ("frame_count", pa.int64()),
        ("duration_s", pa.float64()),
        ("rotation", pa.int32()),
        ("has_audio", pa.bool_()),
        ("caption", pa.string()),
        ("label_suitable", pa.int8()),
        ("label_category", pa.string()),
        ("ground_truth_uri", pa.string()),  # synthetic suites: folder with poses, depth, masks, correspondences
        ("ingested_at", pa.string()),
        (
            "status",
            pa.string(),
        ),  # ok | empty | unreadable | no_video_stream | undecodable | too_short | too_large | missing
        ("message", pa.string()),
    ]
)

FRAMES_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int32()),  # index among the sampled frames
        ("source_index", pa.int32()),  # index of the frame in the source video
        ("timestamp_s", pa.float64()),  # source presentation time
    ]
)


def open_source(uri: str):
    fs, path = filesystem_for(uri)
    return fs.open(path, "rb")


def catalog_row(video: dict, settings: CatalogSettings) -> dict:
    """Probe one video; any failure becomes a named status with its message."""
    row = {
        "video_id": video["video_id"],
        "source_uri": video["uri"],
        "byte_size": video.get("size"),
        "caption": video.get("caption"),
        "label_suitable": video.get("label_suitable"),
        "label_category": video.get("label_category"),
        "ground_truth_uri": video.get("ground_truth_uri"),
        "ingested_at": video.get("ingested_at"),
        "status": "ok",
        "message": None,
    }
    try:
        if video.get("size") == 0:
            raise VideoError("empty", "zero-length file")
        if video.get("size", 0) > settings.max_bytes:
            raise VideoError("too_large", f"{video['size']} bytes > max_bytes {settings.max_bytes}")
        try:
            fh = open_source(video["uri"])
        except FileNotFoundError as exc:
            raise VideoError("missing", f"source file is gone: {exc}") from exc
        with fh:
            info = probe(fh)
        row.update(
            container=info.container,
            codec=info.codec,
            width=info.width,
            height=info.height,
            fps=info.fps,
            frame_count=info.frame_count,
            duration_s=info.duration,
            rotation=info.rotation,
            has_audio=info.has_audio,
        )
        if info.width > settings.max_width or info.height > settings.max_height:
            raise VideoError(
                "too_large", f"{info.width}x{info.height} exceeds {settings.max_width}x{settings.max_height}"
            )
        if info.frame_count < settings.min_frames or info.duration < settings.min_duration_s:
            raise VideoError(
                "too_short",
                f"{info.frame_count} frames, {info.duration:.2f} s (need >= {settings.min_frames} frames and >= "
                f"{settings.min_duration_s} s)",
            )
    except VideoError as exc:
        row["status"], row["message"] = exc.status, exc.message
    return row


def catalog_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)


def frame_rows(video_id: str, uri: str, settings: FrameSettings) -> list[dict]:
    """The frames annotation samples from one video: index, source index, source time."""
    with open_source(uri) as fh:
        times = frame_times(fh)
    keep = select_sample_indices(times, settings.fps)
    return [
        {"video_id": video_id, "frame_index": i, "source_index": int(k), "timestamp_s": float(times[k])}
        for i, k in enumerate(keep)
    ]
