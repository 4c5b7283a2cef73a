"""What every filter shares: the frames (decoded once per video), the result, sigmoid smoothing.

DynPose-100K (appendix A.2) smooths each filter's rule with a sigmoid and averages the smoothed
components; a score of 1 means "suitable for dynamic camera pose estimation", 0 "reject".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dynpose.domain.status import Status
from dynpose.domain.video import SampledFrames, select_sample_indices


@dataclass
class FilterFrameSettings:
    """The ``filter_frames`` settings: one decode per video that every cheap filter shares."""

    fps: float = 6.0  # the paper runs the flow, focal and distortion filters at 6 fps (tracking thins to 3)
    max_side: int = 480  # long side of the filter work size (480x270 for 16:9)
    cache_mib: int = 2048  # local cache of decoded frames shared by the filter steps (0: off)
    cache_dir: str = ""  # default: $DYNPOSE_CACHE/frames or ~/.cache/dynpose/frames


@dataclass
class FilterFrames:
    """A video's frames as the filters see them: one decode at ``fps`` (6, the paper's filter rate),
    long side at most the filter work size; ``source_*`` is the video's own resolution."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (N,) source seconds
    fps: float
    source_width: int
    source_height: int

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def from_sampled(cls, sampled: SampledFrames, source_width: int, source_height: int) -> "FilterFrames":
        return cls(
            sampled.frames,
            np.asarray(sampled.timestamps, np.float64),
            sampled.fps,
            int(source_width),
            int(source_height),
        )

    def at_fps(self, fps: float) -> "FilterFrames":
        """The same frames thinned to a lower rate (e.g. the tracking filter's 3 fps)."""
        keep = select_sample_indices(self.timestamps, fps) if len(self) else np.zeros(0, int)
        return FilterFrames(self.frames[keep], self.timestamps[keep], fps, self.source_width, self.source_height)

    @property
    def width(self) -> int:
        return int(self.frames.shape[2]) if len(self) else 0

    @property
    def height(self) -> int:
        return int(self.frames.shape[1]) if len(self) else 0

    @property
    def to_720p(self) -> float:
        """Factor from work pixels to 720p-equivalent pixels (short side 720), as the paper's focal rule uses."""
        return 720.0 / min(self.width, self.height) if len(self) else float("nan")


@dataclass
class FilterResult:
    """One video's outcome of one filter. ``score`` is None when it was not computed; ``status``
    then says why (a :class:`Status` or a filter-specific reason); ``columns`` holds every
    sub-score and raw measurement by the names of the module's ``COLUMNS``."""

    score: float | None
    status: str = Status.ok
    message: str | None = None
    columns: dict = field(default_factory=dict)


def sigmoid_pass(value: float, threshold: float, width: float, good_above: bool) -> float:
    """A rule "value above (or below) threshold is good", smoothed: 0.5 at the threshold, about
    0.73 / 0.27 one ``width`` away. NaN (not measurable) gives NaN."""
    if value is None or not math.isfinite(value):
        return float("nan")
    z = (value - threshold) / width
    z = z if good_above else -z
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def mean_score(parts: list[float]) -> float | None:
    """The mean of the finite smoothed components; None when none could be measured."""
    finite = [p for p in parts if p is not None and math.isfinite(p)]
    return float(np.mean(finite)) if finite else None


def result_schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """The filter product's table: the shared columns, then the module's own."""
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("score", pa.float64()),
            ("status", pa.string()),
            ("message", pa.string()),
            ("seconds", pa.float64()),
            *columns,
        ]
    )
