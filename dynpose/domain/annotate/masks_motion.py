"""Motion and interaction masks from flow residuals (DynPose-100K A.3, after Ro-DynRF).

Motion, as Ro-DynRF's ``generate_mask.py`` does it: per pixel the max of the forward and backward
Sampson error (``flow.flow_residual``, Ro-DynRF units), errors at or below the ``quantile`` (0.8)
of the frame zeroed, then pixels with error > ``H*W/8100`` kept and opened with a radius-1 disk.
We add the removal of specks smaller than ``min_area`` of the frame.

Interaction (a stand-in for Hands23's held-object masks): the hand itself, plus the connected
regions next to it that move, i.e. whose residual exceeds ``low`` x the motion threshold or whose
flow follows the hand's flow while the hand moves against the static scene (and which are not
perfectly static themselves: residual > 0.2 x threshold, so a panning background never joins).
"""

from __future__ import annotations

import cv2
import numpy as np

from dynpose.domain.annotate.masks_detect import _disk


def motion_threshold(h: int, w: int) -> float:
    """The paper's threshold in Ro-DynRF units at an ``h`` x ``w`` working size."""
    return h * w / 8100.0


def remove_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop connected components smaller than ``min_pixels``."""
    if min_pixels <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False
    return keep[labels]


def motion_mask(
    residual: np.ndarray, quantile: float | None = 0.8, scale: float = 1.0, min_area: float = 2e-4
) -> np.ndarray:
    """Bool mask of pixels whose residual exceeds ``scale`` x H*W/8100 (Ro-DynRF recipe)."""
    h, w = residual.shape
    err = residual
    if quantile is not None:
        err = np.where(err <= np.quantile(err, quantile), 0.0, err)
    mask = (err > scale * motion_threshold(h, w)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disk(1)) > 0
    return remove_small(mask, round(min_area * h * w))


def connected_to(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Connected components of ``candidates`` that touch ``seeds`` (the seeds themselves included)."""
    region = candidates | seeds
    n, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    hit = np.zeros(n, bool)
    hit[np.unique(labels[seeds])] = True
    hit[0] = False
    return hit[labels]


def interaction_mask(
    hands: list[np.ndarray],
    residual: np.ndarray | None,
    flow: np.ndarray | None,
    reach: float = 1.0,
    low: float = 0.5,
    flow_tol: float = 0.3,
) -> np.ndarray:
    """Hands plus what moves with them, within ``reach`` x hand size of each hand.

    ``hands`` are bool masks; ``residual`` is the frame's motion residual, ``flow`` its flow to the
    next (or previous) frame, both at the same size. Without them only the hands are returned.
    """
    if not hands:
        shape = residual.shape if residual is not None else (0, 0)
        return np.zeros(shape, bool)
    h, w = hands[0].shape
    out = np.zeros((h, w), bool)
    thr = motion_threshold(h, w)
    for hand in hands:
        out |= hand
        if residual is None:
            continue
        ys, xs = np.nonzero(hand)
        size = max(np.ptp(xs), np.ptp(ys), 1)
        pad = round(reach * size)
        roi = np.zeros((h, w), bool)
        roi[max(0, ys.min() - pad) : ys.max() + pad + 1, max(0, xs.min() - pad) : xs.max() + pad + 1] = True
        moving = residual > low * thr
        if flow is not None and np.median(residual[hand]) > thr:
            # A moving hand: whatever shares its flow is being carried along with it.
            hand_flow = np.median(flow[hand], axis=0)
            tol = max(1.0, flow_tol * float(np.linalg.norm(hand_flow)))
            moving |= (np.linalg.norm(flow - hand_flow, axis=2) < tol) & (residual > 0.2 * thr)
        out |= connected_to(moving & roi, hand)
    return out
