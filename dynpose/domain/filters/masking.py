"""Dynamic-masking filter (DynPose-100K appendix A.2, filter 4): too little static scene left.

The paper runs its masking method (semantic + interaction + motion, SAM2 propagation) with a
detection every 1 s propagated over the next 1 s (instead of every 0.5 s for annotation), takes the
dynamic-mask area of each frame and gives 0 when the 90th percentile of the per-frame area exceeds
80% of the frame: the 10% of frames with the biggest masks leave almost nothing static to match.

Here ``annotate.masks.compute_dynamic_masks`` runs on the 6 fps filter frames with
``detect_every = propagate = round(fps * keyframe_s)`` (6: a keyframe every 6 frames propagated
over them), at ``work_max_side`` with a faster DIS preset than annotation to meet the 5 s budget.

Limits of the CPU mask stack (see ``docs/masks.md``): the semantic component knows people only
(MediaPipe), not vehicles, animals or other objects; the motion component keeps, as Ro-DynRF does,
only errors above the frame's 80th percentile (``MaskConfig.motion_quantile``), so alone it covers
at most about 20% of a frame (plus dilation and propagation): an area above 80% needs people or
hands. It also measures motion against the dominant image motion, so an object that fills most of
the frame becomes the "static scene" itself and the thin visible background is what gets masked.
On the seed-0 suite (96 clips) no clip's p90 area exceeds 0.45 and the score is 1.00 for every
category; the synthetic ``huge_object`` variant (a rigid panel following the camera over > 82% of
the frame) has the lowest p90 of all (0.09 on average): this filter does not catch it; the flow and
tracking filters partly do (the panel barely moves in the image). A face filling a real clip
(``carphone_pristine.mp4``) reaches a p90 of 0.58.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dynpose.domain.annotate.masks import MaskConfig, compute_dynamic_masks
from dynpose.domain.filters.base import FilterFrames, FilterResult, mean_score, sigmoid_pass
from dynpose.domain.filters.flow import work_long_side
from dynpose.domain.status import Status

NAME = "filter_masking"


@dataclass
class MaskingFilterConfig:
    keyframe_s: float = 1.0  # paper: detect every 1 s and propagate over the next 1 s (6 frames at 6 fps)
    area_quantile: float = 90.0  # paper: the 90th percentile of the per-frame mask area
    max_area: float = 0.8  # paper: that area above 80% of the frame -> 0
    area_width: float = 0.05  # sigmoid width of the area rule (share of the frame)
    work_max_side: int = 320  # masks computed at this long side (annotation: 480); 60 frames in ~3 s on 2 cores
    flow_preset: str = "fast"  # DIS preset of the motion mask and propagation (annotation: "medium", ~4x slower)
    semantic: bool = True  # people (MediaPipe), as annotation
    interaction: bool = True  # hands and held objects, as annotation
    motion: bool = True  # Ro-DynRF Sampson-error motion mask, as annotation
    # annotation re-thresholds motion-only parts on every propagated frame; off: half the time, same p90
    # (0.230 vs 0.235 on a 60-frame clip)
    propagate_refine: bool = False
    min_frames: int = 2  # fewer frames: too_few_frames (the motion mask needs a pair)
    min_side: int = 32  # frames with a shorter side (pixels) are too small to mask (OpenCV's DIS crashes below 32 px)
    min_texture: float = 2.0  # grey-level std below this on every frame: no_texture


COLUMNS: list[tuple[str, pa.DataType]] = [
    ("mask_frames", pa.int64()),  # frames masked
    ("mask_keyframes", pa.int64()),  # frames where the detectors ran (the rest propagated)
    ("p90_mask_area", pa.float64()),  # area_quantile-th percentile of the per-frame dynamic-mask share of the frame
    ("mean_mask_area", pa.float64()),  # mean per-frame dynamic-mask share of the frame
    ("max_mask_area", pa.float64()),  # largest per-frame share
    ("share_frames_above", pa.float64()),  # share of frames whose mask covers more than max_area
    ("mean_semantic_area", pa.float64()),  # mean share of the people mask on keyframes
    ("mean_motion_area", pa.float64()),  # mean share of the motion mask on keyframes
    ("mask_area_score", pa.float64()),  # smoothed "p90_mask_area < max_area" (1 = enough static scene)
]


def _nan_columns() -> dict:
    return {name: (0 if t == pa.int64() else float("nan")) for name, t in COLUMNS}


def mask_config(cfg: MaskingFilterConfig, fps: float, height: int = 0, width: int = 0) -> MaskConfig:
    every = max(1, round((fps if fps and fps > 0 else 6.0) * cfg.keyframe_s))
    side = work_long_side(height, width, cfg.work_max_side, cfg.min_side) if height and width else cfg.work_max_side
    return MaskConfig(
        detect_every=every,
        propagate=every,
        semantic=cfg.semantic,
        interaction=cfg.interaction,
        motion=cfg.motion,
        work_max_side=side,
        flow_preset=cfg.flow_preset,
        propagate_refine=cfg.propagate_refine,
    )


def run(frames: FilterFrames, cfg: MaskingFilterConfig | None = None, video: dict | None = None) -> FilterResult:
    cfg = cfg or MaskingFilterConfig()
    cols = _nan_columns()
    n = len(frames)
    if n < cfg.min_frames:
        return FilterResult(None, Status.too_few_frames, f"{n} frame(s); masking needs {cfg.min_frames}", cols)
    if min(frames.width, frames.height) < cfg.min_side:
        msg = f"{frames.width}x{frames.height} frames; masking needs a side >= {cfg.min_side}"
        return FilterResult(None, "frames_too_small", msg, cols)
    grey_std = frames.frames.reshape(n, -1, 3).std(axis=1).max()
    if grey_std < cfg.min_texture:
        return FilterResult(None, Status.no_texture, f"every frame is uniform (std {grey_std:.2f})", cols)
    dm = compute_dynamic_masks(frames.frames, mask_config(cfg, frames.fps, frames.height, frames.width))
    area = dm.union.reshape(n, -1).mean(axis=1)
    key = dm.detected_frames
    cover = {name: dm.components[name][key].reshape(len(key), -1).mean(axis=1) for name in ("semantic", "motion")}
    p90 = float(np.percentile(area, cfg.area_quantile))
    cols.update(
        mask_frames=n,
        mask_keyframes=len(key),
        p90_mask_area=p90,
        mean_mask_area=float(area.mean()),
        max_mask_area=float(area.max()),
        share_frames_above=float((area > cfg.max_area).mean()),
        mean_semantic_area=float(cover["semantic"].mean()),
        mean_motion_area=float(cover["motion"].mean()),
    )
    cols["mask_area_score"] = sigmoid_pass(p90, cfg.max_area, cfg.area_width, good_above=False)
    score = mean_score([cols["mask_area_score"]])
    return FilterResult(score, Status.ok, f"{n} frames, {len(key)} keyframes", cols)
