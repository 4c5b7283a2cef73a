"""Dynamic masks of a clip: semantic + interaction + motion, detected every few frames and propagated.

DynPose-100K appendix A.3: on frames sampled at 12 fps, the semantic, interaction and motion masks
are computed every 6th frame; their union is propagated over that frame and the 5 following ones.
Components and back ends (details in docs/masks.md):

- semantic: people from MediaPipe Pose segmentation (``masks_detect``); OneFormer is not available;
- interaction: MediaPipe hands plus the moving regions attached to them (``masks_motion``);
- motion: Ro-DynRF's Sampson-error mask on DIS flow, threshold H*W/8100 (``flow``, ``masks_motion``);
- propagation: flow warping (default, CPU) or the SAM2 video predictor (``masks_sam2``);
- vlm (only with ``objects``, DynaPo): boxes a vision-language model gave for key frames, segmented
  by GrabCut or SAM2 (``masks_vlm``); it joins the union that is propagated.

Masks are computed at ``work_max_side`` and returned at input size. In ``components`` the
semantic, interaction and motion arrays are set only on ``detected_frames``; ``propagated`` covers
every frame that a detection reaches; ``union`` is the or of all of them, dilated by ``dilate`` work
pixels as Ro-DynRF does (so it is slightly larger than the components). With ``objects``,
``components["vlm"]`` is set on the frames that have objects and ``union_no_vlm`` is the union as it
would be without them (the ablation: identical to a call without ``objects``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from dynpose.domain.annotate import flow as fl
from dynpose.domain.annotate import masks_detect as det
from dynpose.domain.annotate import masks_vlm as mv
from dynpose.domain.annotate.masks_motion import interaction_mask, motion_mask
from dynpose.domain.annotate.masks_propagate import FlowPropagator

COMPONENTS = ("semantic", "interaction", "motion", "propagated")
VLM = "vlm"  # the DynaPo component: present only when compute_dynamic_masks is given objects


@dataclass
class MaskConfig:
    detect_every: int = 6  # run the detectors on every 6th frame (paper, 12 fps)
    propagate: int = 6  # frames covered by one detection (itself + 5 following)
    semantic: bool = True
    interaction: bool = True
    motion: bool = True
    propagator: str = "flow"  # "flow" | "sam2" | "none" ("none" detects on every frame)
    sam2_checkpoint: str | None = None
    sam2_config: str | None = None  # a yaml path, or a config name inside the sam2 package
    work_max_side: int = 480  # masks computed at this size, returned at input size
    flow_preset: str = "medium"  # DIS preset: "ultrafast" | "fast" | "medium"
    fit_thresh: float = 1.0  # F / H robust fit inlier threshold, work pixels
    f_gain: float = 0.3  # use F (not H) only if it explains this share of H's outliers
    motion_scale: float = 1.0  # x the paper's threshold H*W/8100 (Ro-DynRF units)
    motion_quantile: float | None = 0.8  # Ro-DynRF zeroes errors below this quantile; None: off
    motion_min_area: float = 2e-4  # motion specks below this fraction of the frame are dropped
    max_people: int = 4
    people_hog: bool = False  # add OpenCV HOG pedestrians (slower, more false positives)
    max_hands: int = 4
    interaction_reach: float = 1.0  # held objects searched within this x hand size
    interaction_low: float = 0.5  # x motion threshold for pixels attached to a hand
    dilate: int = 2  # final dilation of detections, work pixels (Ro-DynRF: disk(2))
    propagate_refine: bool = True  # flow propagator: motion-only parts re-thresholded per frame
    sam2_device: str = "cpu"
    # DynaPo's VLM component (masks_vlm), used only when a VLM endpoint is configured
    vlm: bool = True
    vlm_keyframes: int = 16  # at most this many detection frames sent, as images of one request
    vlm_frame_side: int = 512  # long side of each image sent
    vlm_prompt_version: str = "1"  # bump when the prompt changes: cached answers are then asked again
    vlm_segmenter: str = "auto"  # auto (sam2 when sam2_checkpoint is set, else grabcut) | grabcut | sam2 | box
    vlm_motion: str = "none"  # the box's mask and the motion mask inside the box: none | and | or

    def segmenter(self) -> str:
        if self.vlm_segmenter == "auto":
            return "sam2" if self.sam2_checkpoint else "grabcut"
        return self.vlm_segmenter


@dataclass
class DynamicMasks:
    union: np.ndarray  # (N, H, W) bool
    components: dict[str, np.ndarray]  # "semantic", "interaction", "motion", "propagated" (, "vlm") -> (N, H, W) bool
    detected_frames: np.ndarray  # indices where detection ran
    timings: dict[str, float] = field(default_factory=dict)  # seconds per component
    union_no_vlm: np.ndarray | None = None  # with objects: the union without the vlm component

    def coverage(self) -> dict[str, np.ndarray]:
        """Per-frame fraction of the frame covered, per component and for the union."""
        out = {name: m.reshape(len(m), -1).mean(axis=1) for name, m in self.components.items()}
        out["union"] = self.union.reshape(len(self.union), -1).mean(axis=1)
        return out


class _Clock:
    """Exclusive wall time per key: time spent in a nested key is not counted twice."""

    def __init__(self, keys: tuple[str, ...]):
        self.seconds = dict.fromkeys(keys, 0.0)
        self._inner: list[float] = []

    @contextmanager
    def __call__(self, key: str):
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.seconds[key] = self.seconds.get(key, 0.0) + spent - self._inner.pop()
            if self._inner:
                self._inner[-1] += spent


class _Evidence:
    """Lazily computed, cached flows and motion residuals of the working-size frames."""

    def __init__(self, frames: np.ndarray, cfg: MaskConfig, clock: _Clock):
        self.frames, self.cfg, self.clock = frames, cfg, clock
        self.grey = [fl.to_gray(f) for f in frames]
        self._flow: dict[tuple[int, int], np.ndarray] = {}
        self._res: dict[int, np.ndarray] = {}
        self._mot: dict[int, np.ndarray] = {}

    def flow(self, i: int, j: int) -> np.ndarray:
        if (i, j) not in self._flow:
            with self.clock("flow"):
                self._flow[(i, j)] = fl.dis_flow(self.grey[i], self.grey[j], self.cfg.flow_preset)
        return self._flow[(i, j)]

    def residual(self, i: int) -> np.ndarray:
        """Max of forward (i -> i+1) and backward (i -> i-1) Sampson error on frame i."""
        if i not in self._res:
            errs = []
            for j in (i + 1, i - 1):
                if 0 <= j < len(self.frames):
                    fwd, back = self.flow(i, j), self.flow(j, i)
                    with self.clock("motion"):
                        errs.append(fl.flow_residual(fwd, back, thresh=self.cfg.fit_thresh, f_gain=self.cfg.f_gain)[0])
            self._res[i] = np.maximum.reduce(errs) if errs else np.zeros(self.grey[i].shape, np.float32)
        return self._res[i]

    def motion(self, i: int) -> np.ndarray:
        if i not in self._mot:
            res = self.residual(i)
            with self.clock("motion"):
                self._mot[i] = motion_mask(
                    res, self.cfg.motion_quantile, self.cfg.motion_scale, self.cfg.motion_min_area
                )
        return self._mot[i]

    def forget_before(self, k: int) -> None:
        """Drop what no later frame needs (flows between, and residuals of, frames before ``k``)."""
        self._flow = {key: v for key, v in self._flow.items() if max(key) >= k}
        self._res = {i: v for i, v in self._res.items() if i >= k}
        self._mot = {i: v for i, v in self._mot.items() if i >= k}

    def any_flow(self, i: int) -> np.ndarray | None:
        n = len(self.frames)
        return self.flow(i, i + 1) if i + 1 < n else (self.flow(i, i - 1) if i > 0 else None)


def _resize_frames(frames: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _upsize(masks: np.ndarray, h: int, w: int) -> np.ndarray:
    if masks.shape[1:] == (h, w):
        return masks
    out = np.zeros((len(masks), h, w), bool)
    for i, m in enumerate(masks):  # linear on 0/255 then 50% keeps edges smooth
        if m.any():
            out[i] = cv2.resize(m.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) >= 128
    return out


def _detect(i: int, img: np.ndarray, ev: _Evidence, cfg: MaskConfig) -> dict[str, np.ndarray]:
    """Semantic, interaction and motion masks of working frame ``i``."""
    shape = img.shape[:2]
    out = {name: np.zeros(shape, bool) for name in COMPONENTS[:3]}
    if cfg.semantic:
        with ev.clock("semantic"):
            for person in det.segment_people(img, cfg.max_people):
                out["semantic"] |= person
            if cfg.people_hog:
                for person in det.hog_people(img, out["semantic"]):
                    out["semantic"] |= person
    if cfg.motion:
        out["motion"] = ev.motion(i)
    if cfg.interaction:
        with ev.clock("interaction"):
            hands = [det.hand_mask(lm, shape) for lm in det.detect_hands(img, cfg.max_hands)]
            if hands:
                moving = len(ev.frames) > 1  # held objects are found through their motion
                res, flow = (ev.residual(i), ev.any_flow(i)) if moving else (None, None)
                out["interaction"] = interaction_mask(hands, res, flow, cfg.interaction_reach, cfg.interaction_low)
    return out


def _make_propagator(cfg: MaskConfig, work: np.ndarray, ev: _Evidence):
    if cfg.propagator == "flow":
        refine = cfg.propagate_refine and cfg.motion and len(work) > 1
        return FlowPropagator(lambda t: ev.flow(t, t - 1), lambda t: ev.flow(t, t + 1), ev.motion if refine else None)
    if cfg.propagator == "sam2":
        from dynpose.domain.annotate.masks_sam2 import Sam2Propagator

        return Sam2Propagator(work, cfg.sam2_checkpoint, cfg.sam2_config, cfg.sam2_device)
    raise ValueError(f"unknown propagator {cfg.propagator!r}: use 'flow', 'sam2' or 'none'")


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return masks
    kernel = det._disk(radius)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 if m.any() else m for m in masks])


def _every(cfg: MaskConfig) -> int:
    return 1 if cfg.propagator == "none" else max(1, cfg.detect_every)


def detection_frames(n: int, cfg: MaskConfig) -> np.ndarray:
    """The frames the detectors run on (every ``detect_every``-th; every frame without propagation)."""
    return np.arange(0, n, _every(cfg))


def _make_box_segmenter(cfg: MaskConfig):
    """SAM2's box segmentation when the vlm component uses it, else None (GrabCut needs nothing)."""
    if cfg.segmenter() != "sam2":
        return None
    from dynpose.domain.annotate.masks_sam2 import Sam2BoxSegmenter

    return Sam2BoxSegmenter(cfg.sam2_checkpoint, cfg.sam2_config, cfg.sam2_device)


def compute_dynamic_masks(
    frames: np.ndarray, cfg: MaskConfig | None = None, objects: dict[int, list[mv.VlmObject]] | None = None
) -> DynamicMasks:
    """Dynamic masks of ``frames`` ((N, H, W, 3) uint8 RGB, sampled at 12 fps for paper settings).

    ``objects``: the VLM's boxes per detection frame index (``masks_vlm``); their masks are the
    ``vlm`` component. None: no vlm component, and the result is what it always was.
    """
    cfg = cfg or MaskConfig()
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (N, H, W, 3) RGB, got {frames.shape}")
    clock = _Clock(("resize", "flow", "semantic", "interaction", "motion", "propagation"))
    t_all = time.perf_counter()
    n, h, w = frames.shape[:3]
    with clock("resize"):
        work = _resize_frames(np.asarray(frames, np.uint8), cfg.work_max_side)
    ev = _Evidence(work, cfg, clock)
    every = _every(cfg)
    detected = np.arange(0, n, every)
    if objects is not None and set(objects) - set(detected.tolist()):
        raise ValueError(f"objects on frames that are not detection frames: {sorted(set(objects) - set(detected))}")
    shape = (n,) + work.shape[1:3]
    names = COMPONENTS + ((VLM,) if objects is not None else ())
    comp = {name: np.zeros(shape, bool) for name in names}
    propagated_no_vlm = np.zeros(shape, bool) if objects is not None else None
    propagator = None if cfg.propagator == "none" else _make_propagator(cfg, work, ev)
    boxes = _make_box_segmenter(cfg) if objects else None
    for i in detected:
        found = _detect(i, work[i], ev, cfg)
        vlm = np.zeros(shape[1:], bool)
        if objects and objects.get(int(i)):
            with clock("vlm"):
                motion = ev.motion(i) if cfg.vlm_motion != "none" else None
                vlm = mv.segment_objects(work[i], objects[int(i)], cfg.segmenter(), motion, cfg.vlm_motion, boxes)
            found[VLM] = vlm
        for name, m in found.items():
            comp[name][i] = m
        if propagator is not None:
            with clock("propagation"):
                length = min(max(1, cfg.propagate), n - i)
                still = found["semantic"] | found["interaction"]  # people and hands may stand still
                base = still | found["motion"]
                # what the VLM names is sticky like people: it may be still at the next frames
                joined = propagator.propagate(int(i), base | vlm, length, found["motion"] & ~(still | vlm))
                comp["propagated"][i : i + length] |= joined
                if propagated_no_vlm is not None:  # the ablation; the same masks where the VLM added nothing
                    if vlm.any():
                        joined = propagator.propagate(int(i), base, length, found["motion"] & ~still)
                    propagated_no_vlm[i : i + length] |= joined
        ev.forget_before(int(i) + every - 1)
    with clock("resize"):
        # Ro-DynRF dilates its final mask by a radius-2 disk; the components stay undilated.
        union = _upsize(_dilate(np.logical_or.reduce([comp[name] for name in names]), cfg.dilate), h, w)
        union_no_vlm = None
        if propagated_no_vlm is not None:
            parts = [comp[name] for name in COMPONENTS[:3]] + [propagated_no_vlm]
            union_no_vlm = _upsize(_dilate(np.logical_or.reduce(parts), cfg.dilate), h, w)
        comp = {name: _upsize(m, h, w) for name, m in comp.items()}
    timings = dict(clock.seconds, total=time.perf_counter() - t_all)
    return DynamicMasks(union, comp, detected, timings, union_no_vlm)


def encode_mask(mask: np.ndarray) -> bytes:
    """A bool (H, W) mask as 1-bit PNG bytes."""
    ok, buf = cv2.imencode(
        ".png",
        np.asarray(mask, bool).astype(np.uint8) * 255,
        [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9],
    )
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_mask(data: bytes) -> np.ndarray:
    """Inverse of ``encode_mask``: (H, W) bool."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("not a PNG mask")
    return img > 0
