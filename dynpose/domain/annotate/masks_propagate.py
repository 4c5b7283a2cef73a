"""Mask propagation between detections (DynPose-100K A.3 "Mask propagation").

The paper propagates the detected mask with the SAM2 video predictor over the detection frame and
the five after it. The CPU default here, ``FlowPropagator``, carries two layers along dense flow:

- the *sticky* layer (what semantics and hands found, which may stand still) is pulled along the
  backward flow ``t -> t-1`` and re-binarised at 0.5 each frame. Pixels whose flow fails the
  forward-backward check are uncovered background (the place an object just left) and are
  dropped, so moving objects leave no trail. (The motion mask is no help there: flow is wrong on
  uncovered pixels, so their Sampson error is high too.);
- the *moving* layer (what only the motion mask found) is re-thresholded: at each frame it becomes
  the components of that frame's motion mask that overlap the warped previous layer. A moving
  object stays covered in its current shape; when it stops, it stops being masked.

Without motion evidence (``motion=None``) everything is sticky; without ``fwd_flow`` no pixel is
dropped for failing the forward-backward check (and the masks of moving objects trail behind).
``masks_sam2.Sam2Propagator`` is the learned back end with the same ``propagate`` signature.
"""

from __future__ import annotations

from typing import Callable, Protocol

import cv2
import numpy as np

from dynpose.domain.annotate.flow import warp_backward


class Propagator(Protocol):
    def propagate(self, start: int, mask: np.ndarray, length: int, moving: np.ndarray | None = None) -> np.ndarray:
        """(length, h, w) bool masks of frames ``start ..`` from ``mask`` at ``start``.

        ``moving`` (a part of ``mask``) is what motion alone found; back ends may ignore it.
        """


def overlapping(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Connected components of ``candidates`` that share at least one pixel with ``seeds``."""
    if not candidates.any() or not seeds.any():
        return np.zeros_like(candidates)
    n, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    hit = np.zeros(n, bool)
    hit[np.unique(labels[seeds & candidates])] = True
    hit[0] = False
    return hit[labels]


_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _warp(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    return warp_backward(mask.astype(np.float32), flow) > 0.5


def _uncovered(back: np.ndarray, fwd_prev: np.ndarray, tol: float = 1.0, rel: float = 0.1) -> np.ndarray:
    """Pixels of frame t whose flow to t-1 does not come back: not visible in t-1."""
    there = warp_backward(fwd_prev, back, border=0.0)  # flow t-1 -> t at the matched point
    err = np.linalg.norm(back + there, axis=2)
    return err > tol + rel * np.linalg.norm(back, axis=2)


class FlowPropagator:
    """Warp masks along flow. ``back_flow(t)``: flow t -> t-1; ``fwd_flow(t)``: flow t -> t+1;
    ``motion(t)``: bool motion mask of frame t (optional)."""

    def __init__(
        self,
        back_flow: Callable[[int], np.ndarray],
        fwd_flow: Callable[[int], np.ndarray] | None = None,
        motion: Callable[[int], np.ndarray] | None = None,
    ):
        self.back_flow, self.fwd_flow, self.motion = back_flow, fwd_flow, motion

    def propagate(self, start: int, mask: np.ndarray, length: int, moving: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((length,) + mask.shape, bool)
        out[0] = mask
        if self.motion is None or moving is None:
            moving = np.zeros_like(mask)
        sticky = mask & ~moving
        for k in range(1, length):
            t = start + k
            back = self.back_flow(t)
            if sticky.any():
                sticky = _warp(sticky, back)
                if self.fwd_flow is not None:
                    sticky &= ~_uncovered(back, self.fwd_flow(t - 1))
                    # The check frays the trailing edge; an opening removes the crumbs.
                    sticky = cv2.morphologyEx(sticky.astype(np.uint8), cv2.MORPH_OPEN, _OPEN) > 0
            if moving.any():
                moving = overlapping(self.motion(t), _warp(moving, back))
            out[k] = sticky | moving
        return out
