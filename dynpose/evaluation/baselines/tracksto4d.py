"""TracksTo4D (Kasten et al. 2024): our tracks through the learned network, no masks, no optimisation.

Options: ``checkpoint`` (default: the weights shipped with the package, trained here on the bench
suite's tuning clips; see dynpose/domain/tracksto4d/weights/README.md), ``focal`` (pixels; default
COLMAP's 1.2 x long side prior, as the network assumes known intrinsics), and the fields of
:class:`dynpose.domain.tracksto4d.infer.InferConfig`.
"""

from __future__ import annotations

import time

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.tracksto4d import infer
from dynpose.domain.tracksto4d.data import video_tracks
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.baselines import failed_result

NAME = "tracksto4d"


def run(
    sampled: SampledFrames,
    dynamic_masks: np.ndarray | None = None,
    checkpoint: str | None = None,
    focal: float | None = None,
    ba: bool = False,
    **options,
) -> PoseResult:
    name = "tracksto4d+ba" if ba else NAME
    cfg = infer.InferConfig(ba=ba, **options)
    try:
        model, _ = infer.load_checkpoint(str(checkpoint or infer.DEFAULT_CHECKPOINT))
    except FileNotFoundError as exc:
        return failed_result(sampled, str(exc), method=name)
    t0 = time.perf_counter()
    tracks = video_tracks(sampled.frames, focal)
    tracking_s = time.perf_counter() - t0
    if tracks.num_tracks < 8:
        return failed_result(sampled, f"only {tracks.num_tracks} tracks observed in more than 10 frames", method=name)
    result = infer.run(model, tracks, sampled.timestamps, cfg)
    result.extra["tracking_s"] = tracking_s
    return result
