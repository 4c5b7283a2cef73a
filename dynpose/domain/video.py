"""Video probing and frame sampling with PyAV.

Resolution policy for sampled frames: frames keep their stored resolution unless ``max_side`` is
given, in which case they are resized (area interpolation) so that the longer side is at most
``max_side`` pixels. Display rotation metadata is reported by ``probe`` but not applied to pixels.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import BinaryIO

import av
import cv2
import numpy as np


class VideoError(Exception):
    """A video that cannot be used; ``status`` is the catalog's named failure."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class VideoInfo:
    container: str
    codec: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int
    has_audio: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _rotation(stream) -> int:
    """Display rotation in degrees from the stream's display matrix or legacy 'rotate' tag."""
    tag = stream.metadata.get("rotate")
    if tag is not None:
        try:
            return int(float(tag)) % 360
        except ValueError:
            pass
    try:
        for side in getattr(stream, "side_data", {}) or {}:
            if "display" in str(side).lower():
                matrix = np.frombuffer(bytes(stream.side_data[side]), dtype=np.int32)[:4].astype(float)
                return int(round(-np.degrees(np.arctan2(matrix[1], matrix[0])))) % 360
    except Exception:  # side data layouts vary across PyAV versions; rotation is advisory
        pass
    return 0


def _open(source):
    """Open a container for reading; anything that is not media becomes ``unreadable``."""
    try:
        return av.open(source, mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError("unreadable", f"not a readable media container ({exc})") from exc


def probe(source: str | BinaryIO, decode_check: bool = True) -> VideoInfo:
    """Read container metadata; with ``decode_check`` also decode the first frame.

    Raises VideoError with status ``empty``, ``unreadable``, ``no_video_stream`` or ``undecodable``.
    """
    if hasattr(source, "seek"):
        source.seek(0, io.SEEK_END)
        empty = source.tell() == 0
        source.seek(0)
        if empty:
            raise VideoError("empty", "zero-length file")
    container = _open(source)
    with container:
        if not container.streams.video:
            raise VideoError("no_video_stream", f"container '{container.format.name}' has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frame_count = int(stream.frames or 0)
        if frame_count == 0 and fps > 0:
            frame_count = int(round(duration * fps))
        info = VideoInfo(
            container=container.format.name,
            codec=ctx.name if ctx is not None else "unknown",
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
            fps=fps,
            frame_count=frame_count,
            duration=duration,
            rotation=_rotation(stream),
            has_audio=bool(container.streams.audio),
        )
        if decode_check:
            try:
                next(container.decode(stream))
            except StopIteration as exc:
                raise VideoError("undecodable", "video stream has no decodable frame") from exc
            except (av.FFmpegError, ValueError) as exc:
                raise VideoError("undecodable", f"codec '{info.codec}' could not decode a frame ({exc})") from exc
    return info


@dataclass
class SampledFrames:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (N,) source presentation time in seconds
    source_indices: np.ndarray  # (N,) index of the frame in decode order
    fps: float  # sampling rate asked for

    def __len__(self) -> int:
        return len(self.frames)


def _resize(img: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side or max(img.shape[:2]) <= max_side:
        return img
    scale = max_side / max(img.shape[:2])
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def frame_times(source: str | BinaryIO) -> np.ndarray:
    """Presentation times (seconds, sorted) of every video frame, from packets alone (no decoding)."""
    container = _open(source)
    with container:
        if not container.streams.video:
            raise VideoError("no_video_stream", "no video stream")
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
        tb = float(stream.time_base)
    times = np.sort(np.asarray(pts, np.float64)) * tb
    return times - times[0] if len(times) else times


def select_sample_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the first frame at or after each tick ``k / fps`` (times relative to the first frame).

    A 30 fps source sampled at 12 fps gives frames 0, 3, 5, 8, ...; ``fps <= 0`` keeps every frame.
    """
    if fps <= 0 or len(times) == 0:
        return np.arange(len(times))
    ticks = np.arange(0.0, times[-1] + 1e-9, 1.0 / fps)
    idx = np.searchsorted(times, ticks - 1e-6, side="left")
    return np.unique(idx[idx < len(times)])


def sample_frames(
    source: str | BinaryIO,
    fps: float = 12.0,
    max_side: int | None = None,
    max_frames: int | None = None,
) -> SampledFrames:
    """Decode the frames chosen by ``select_sample_indices``, with their source timestamps."""
    times = frame_times(source)
    if hasattr(source, "seek"):
        source.seek(0)
    keep = select_sample_indices(times, fps)
    if max_frames:
        keep = keep[:max_frames]
    wanted = set(keep.tolist())
    frames, indices = [], []
    container = _open(source)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    frames.append(_resize(frame.to_ndarray(format="rgb24"), max_side))
                    indices.append(index)
                if index >= keep[-1]:
                    break
        except (av.FFmpegError, ValueError) as exc:
            if not frames:
                raise VideoError("undecodable", f"decoding failed ({exc})") from exc
            # A damaged tail: keep what decoded; the caller sees fewer frames.
    if not frames:
        raise VideoError("too_short", "no frame decoded")
    indices = np.asarray(indices)
    return SampledFrames(np.stack(frames), times[indices], indices, fps)


def info_json(info: VideoInfo) -> str:
    return json.dumps(info.to_dict(), sort_keys=True)
