"""Content filter (DynPose-100K appendix A.2, filter 1): a substitute for the Hands23 classifiers.

The paper runs two Hands23 video classifiers on 4 thumbnails: "acceptable" (no cartoon, screen
recording, presenter sitting in front of the camera, children, ...; pass >= 0.55) and
"interaction" (interaction likely, not a static scene; pass >= 0.20), and averages the two. No such
classifier ships with a pip package here, so this filter measures the same things directly, with
what does ship (PP-OCR text detection from ``rapidocr_onnxruntime``, MediaPipe face detection and
selfie segmentation, both with bundled weights) and image statistics:

- overlay: burnt-in text and logos. OCR text *detection* (no recognition) on ``ocr_frames`` evenly
  spaced frames; a pixel covered by a text box in at least ``persist_frac`` of them is persistent
  text. Scene text moves with a moving camera, burnt-in text stays put in image space. Also the
  share of the frame that is 2-D textured (corner-like) and unchanged 1 s later ("static edges":
  logos without text, tickers' frames, UI chrome; an edge along the camera motion does not count).
- presenter: a large, centred face (MediaPipe short-range face detector) in at least half of the
  ``face_frames`` sampled frames (the median face area), or a person (selfie mask) who covers the
  same large part of the frame in every one of them (``persist_frac``).
- synthetic: cartoons, games, screen recordings: flat (noise-free, constant) regions, a small
  palette, exactly static pixels across frames, long axis-aligned lines that stay put (UI).
- composite: side-by-side or stacked videos (a vertical or horizontal discontinuity through the
  frame centre, persistent over time) and letterbox / pillarbox bars.
- quality: blur (variance of the Laplacian), darkness, up-scaled content (little spectral power
  near the Nyquist frequency relative to the mid band), BRISQUE when ``cv2.quality`` and its model
  files exist (Debian's opencv-data; not installed here, so the column is null).
- format: the source resolution (short side) and frame rate from the catalog row.
- interaction: something happens in the frame: a person is present (selfie mask) or the frame
  content changes; the paper's interaction classifier passes at a low 0.20.

Each group is one sub-score: its rules are each smoothed with ``sigmoid_pass`` and the group takes
the worst of them (any failed rule fails the group). The score is the mean of the group scores
(``combine="mean"``) or, as the paper's two classifiers, the mean of "acceptable" (the worst of the
defect groups) and "interaction" (``combine="paper"``).

Models load once per process (a module-level lazy cache, with a lock: MediaPipe graphs are not
thread-safe); missing packages leave their measurements NaN (null) and the rest still scores.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from dynpose.domain.filters.base import FilterFrames, FilterResult, mean_score, sigmoid_pass
from dynpose.domain.status import Status

NAME = "filter_content"


@dataclass
class ContentConfig:
    # sampling (cost): the detectors see only a few evenly spaced frames
    stats_frames: int = 12  # frames for the statistics across frames (static pixels, lines, seam, change)
    still_frames: int = 4  # of those, frames for the per-frame statistics (flat, palette, sharpness, spectrum)
    ocr_frames: int = 3  # frames for OCR text detection (~0.1 s each at 480x270)
    ocr_max_side: int = 480  # OCR input long side (pixels)
    face_frames: int = 6  # frames for face detection and selfie segmentation (~5-10 ms each)
    threads: int = 1  # onnxruntime intra-op threads for the OCR detector
    min_frames: int = 2  # fewer frames: too_few_frames
    min_side: int = 32  # frames with a shorter side (pixels) are too small: too_small
    min_texture: float = 2.0  # grey std below this on every frame: uniform_frames (nothing to judge)
    # overlay: burnt-in text / logos
    ocr_box_thresh: float = 0.5  # PP-OCR DB box score threshold (rapidocr default)
    persist_frac: float = 1.0  # a pixel is persistent (text, person) if covered in >= this share of the sampled frames
    max_text_persistent: float = 0.015  # persistent text above this share of the frame -> overlay
    text_persistent_width: float = 0.004  # sigmoid width (share of frame)
    pair_gap_s: float = 1.0  # static / changed pixels compare frames this far apart (seconds)
    static_tol: int = 1  # |grey difference| <= this between two sampled frames: an unchanged pixel
    corner_eig: float = 0.002  # cv2.cornerMinEigenVal (3x3) above this: a 2-D textured pixel
    max_static_edges: float = 0.0025  # unchanged textured pixels above this share of the frame -> overlay / UI
    static_edges_width: float = 0.0005  # sigmoid width (share of frame)
    # presenter
    face_confidence: float = 0.5  # MediaPipe face detection minimum confidence
    face_centre_radius: float = 0.35  # face centre further than this (fraction of width) from the centre: weight 0
    max_presenter_face: float = 0.04  # median centred face area above this share of the frame -> presenter
    presenter_face_width: float = 0.01  # sigmoid width (share of frame)
    person_threshold: float = 0.5  # selfie mask probability above this: person pixel
    max_person_persistent: float = 0.25  # persistent person area above this share of the frame -> presenter
    person_persistent_width: float = 0.06  # sigmoid width (share of frame)
    # synthetic: cartoon / game / screen recording
    flat_tol: int = 1  # neighbouring pixels within this (every channel): flat
    max_flat_share: float = 0.55  # flat pixel share above this -> synthetic
    flat_width: float = 0.06  # sigmoid width
    palette_colours: int = 48  # the palette: this many most frequent colours (5 bits per channel)
    max_palette_share: float = 0.8  # share of pixels in the palette above this -> synthetic
    palette_width: float = 0.03  # sigmoid width
    max_static_share: float = 0.35  # unchanged pixel share (all pixels) above this -> screen / frozen
    static_width: float = 0.06  # sigmoid width
    line_edge: float = 16.0  # grey step above this across a row / column boundary: a line pixel
    line_min_span: float = 0.5  # a line covers at least this share of the row / column, in mean over frames
    max_ui_lines: float = 2.5  # persistent axis-aligned lines above this many -> UI / composite
    ui_lines_width: float = 0.5  # sigmoid width (lines)
    # composite
    seam_band: float = 0.01  # search the seam within +- this share of the size around the centre
    seam_contrast: float = 2.0  # a seam step is this many times the steps 3 pixels to either side
    seam_min_step: float = 6.0  # and at least this (grey levels)
    max_seam: float = 0.45  # seam steps along more than this share of the centre line -> side by side / stacked
    seam_width: float = 0.04  # sigmoid width
    bar_luma: float = 24.0  # border rows / columns with 99% of pixels darker than this: bars
    max_letterbox: float = 0.3  # bar area above this share of the frame -> letterboxed / pillarboxed
    letterbox_width: float = 0.06  # sigmoid width
    # quality
    min_sharpness: float = 30.0  # median variance of the Laplacian (grey levels^2) below this -> blurry
    sharpness_width: float = 10.0  # sigmoid width
    min_luma: float = 35.0  # median mean grey level below this -> too dark
    luma_width: float = 8.0  # sigmoid width
    min_hf_ratio: float = 0.03  # top-band / mid-band spectral power below this -> up-scaled (>= ~1.5x) or blurred
    hf_width: float = 0.01  # sigmoid width
    brisque_model: str = "/usr/share/opencv4/quality/brisque_model_live.yml"  # Debian opencv-data; optional
    brisque_range: str = "/usr/share/opencv4/quality/brisque_range_live.yml"  # optional
    max_brisque: float = 50.0  # BRISQUE above this -> poor quality (12 sharp, 69 blurred measured)
    brisque_width: float = 8.0  # sigmoid width
    # format (catalog row)
    min_short_side: float = 200.0  # source short side below this (pixels) -> low resolution (144p bad, 240p fine)
    short_side_width: float = 20.0  # sigmoid width (pixels)
    min_fps: float = 8.0  # source frame rate below this -> too choppy
    fps_width: float = 1.0  # sigmoid width (fps)
    # interaction
    person_min_area: float = 0.01  # selfie mask above this share of the frame: a person is present
    change_tol: int = 12  # |grey difference| above this between sampled frames: a changed pixel
    min_interaction: float = 0.2  # paper: interaction classifier passes at 0.20
    interaction_width: float = 0.05  # sigmoid width
    # combination
    combine: str = "paper"  # paper: mean(acceptable, interaction), as its two classifiers | mean: of the groups


COLUMNS: list[tuple[str, pa.DataType]] = [
    ("frames_used", pa.int64()),  # frames the image statistics used
    # overlay
    ("text_area", pa.float64()),  # mean share of the frame covered by OCR text boxes
    ("text_persistent", pa.float64()),  # share of the frame boxed as text in >= persist_frac of the OCR frames
    ("text_boxes", pa.float64()),  # mean number of text boxes per OCR frame
    ("static_edges", pa.float64()),  # share of the frame that is 2-D textured and unchanged pair_gap_s later
    ("overlay_score", pa.float64()),  # 1 = no burnt-in text / logo
    # presenter
    ("face_frames", pa.float64()),  # share of sampled frames with a detected face
    ("face_area", pa.float64()),  # median over frames of the largest centred face's box area (share of frame)
    ("person_area", pa.float64()),  # median selfie-mask area (share of frame)
    ("person_persistent", pa.float64()),  # share of the frame that is person in >= persist_frac of the frames
    ("presenter_score", pa.float64()),  # 1 = no presenter in front of the camera
    # synthetic
    ("flat_share", pa.float64()),  # share of pixels in exactly flat (noise-free) regions
    ("palette_share", pa.float64()),  # share of pixels in the palette_colours most frequent colours
    ("static_share", pa.float64()),  # share of pixels unchanged (within static_tol) pair_gap_s later
    ("ui_lines", pa.float64()),  # persistent long axis-aligned lines (count)
    ("synthetic_score", pa.float64()),  # 1 = looks like camera footage (not cartoon / game / screen)
    # composite
    ("seam", pa.float64()),  # share of the centre line (vertical or horizontal, the larger) with a seam-like step
    ("letterbox", pa.float64()),  # share of the frame in black bars
    ("composite_score", pa.float64()),  # 1 = one full-frame video
    # quality
    ("sharpness", pa.float64()),  # median variance of the grey Laplacian
    ("luma", pa.float64()),  # median mean grey level (0-255)
    ("hf_ratio", pa.float64()),  # spectral power at 0.6-1 Nyquist / at 0.3-0.5 Nyquist (low: up-scaled or blurred)
    ("brisque", pa.float64()),  # median BRISQUE (lower is better); null without cv2.quality and its model
    ("quality_score", pa.float64()),  # 1 = sharp, bright enough, full resolution detail
    # format
    ("source_short_side", pa.float64()),  # the source video's short side (pixels)
    ("source_fps", pa.float64()),  # the source frame rate
    ("format_score", pa.float64()),  # 1 = resolution and frame rate fine
    # interaction
    ("person_frames", pa.float64()),  # share of sampled frames with a person (selfie mask >= person_min_area)
    ("changed_share", pa.float64()),  # mean share of pixels that change by > change_tol pair_gap_s later
    ("interaction_score", pa.float64()),  # 1 = something happens (person present or the content changes)
    ("acceptable_score", pa.float64()),  # worst of the defect groups (overlay ... format), the paper's "acceptable"
]

GROUPS = ["overlay_score", "presenter_score", "synthetic_score", "composite_score", "quality_score", "format_score"]

# ---------------------------------------------------------------------------------------------
# models: loaded once per process, on first use

_LOCK = threading.Lock()
_MODELS: dict = {}


def _cached(key: tuple, load):
    """The model under ``key``, loaded by ``load()`` on first use; None (and not retried) if that fails."""
    with _LOCK:
        if key not in _MODELS:
            try:
                _MODELS[key] = load()
            except Exception:  # noqa: BLE001 - an optional back end: its measurements stay null
                _MODELS[key] = None
        return _MODELS[key]


def _text_detector(cfg: ContentConfig):
    """The PP-OCRv4 text detector shipped in rapidocr_onnxruntime's wheel; None if not installed."""

    def load():
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

        root = os.path.dirname(rapidocr_onnxruntime.__file__)
        return TextDetector(
            {
                "model_path": os.path.join(root, "models", "ch_PP-OCRv4_det_infer.onnx"),
                # "max" keeps inputs below 960 px at their own size (rounded to a multiple of 32)
                "limit_side_len": cfg.ocr_max_side,
                "limit_type": "max",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                "thresh": 0.3,
                "box_thresh": cfg.ocr_box_thresh,
                "max_candidates": 1000,
                "unclip_ratio": 1.6,
                "use_dilation": True,
                "score_mode": "fast",
                "use_cuda": False,
                "use_dml": False,
                "intra_op_num_threads": cfg.threads,
                "inter_op_num_threads": 1,
            }
        )

    return _cached(("ocr", cfg.ocr_box_thresh, cfg.threads, cfg.ocr_max_side), load)


def _mediapipe(kind: str, cfg: ContentConfig):
    """MediaPipe's legacy face detector (short range) or selfie segmenter (landscape); None if missing."""

    def load():
        import mediapipe as mp

        if kind == "face":
            return mp.solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=cfg.face_confidence
            )
        return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)

    return _cached((kind, cfg.face_confidence if kind == "face" else None), load)


def _brisque_available(cfg: ContentConfig) -> bool:
    return hasattr(cv2, "quality") and os.path.isfile(cfg.brisque_model) and os.path.isfile(cfg.brisque_range)


# ---------------------------------------------------------------------------------------------
# measurements


def _pick(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices out of ``n`` (all of them if ``n <= k``)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def _bars(grey: np.ndarray, cfg: ContentConfig) -> tuple[int, int, int, int]:
    """Black bars: (top, bottom, left, right) in pixels, each at most 40% of the size."""
    n, h, w = grey.shape
    rows = np.percentile(grey.transpose(1, 0, 2).reshape(h, -1), 99, axis=1)
    cols = np.percentile(grey.transpose(2, 0, 1).reshape(w, -1), 99, axis=1)

    def run(profile: np.ndarray, limit: int) -> int:
        dark = profile <= cfg.bar_luma
        k = 0
        while k < limit and dark[k]:
            k += 1
        return k

    top, bottom = run(rows, int(0.4 * h)), run(rows[::-1], int(0.4 * h))
    left, right = run(cols, int(0.4 * w)), run(cols[::-1], int(0.4 * w))
    return top, bottom, left, right


def _pairs(times: np.ndarray, idx: np.ndarray, gap: float) -> list[tuple[int, int]]:
    """For each chosen frame, the first frame at least ``gap`` seconds later (first and last frame
    when the video is shorter than that): far enough apart that a slow pan moves every edge."""
    t = np.asarray(times, np.float64)
    if len(t) < 2:
        return []
    out = []
    for i in idx:
        j = int(np.searchsorted(t, t[i] + gap - 1e-6))
        if j < len(t):
            out.append((int(i), j))
    return out or [(0, len(t) - 1)]


def _chan_max(img: np.ndarray) -> np.ndarray:
    c = cv2.split(img)
    return cv2.max(cv2.max(c[0], c[1]), c[2])


def _flat_share(rgb: np.ndarray, tol: int) -> float:
    """Share of pixels equal (within ``tol``, every channel) to their right and lower neighbours."""
    base = np.ascontiguousarray(rgb[:-1, :-1])
    dx = _chan_max(cv2.absdiff(np.ascontiguousarray(rgb[:-1, 1:]), base))
    dy = _chan_max(cv2.absdiff(np.ascontiguousarray(rgb[1:, :-1]), base))
    return float(np.count_nonzero(cv2.max(dx, dy) <= tol) / dx.size)


def _palette_share(rgb: np.ndarray, k: int) -> float:
    q = (rgb >> 3).astype(np.int32)
    code = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
    counts = np.bincount(code.ravel(), minlength=1 << 15)
    top = np.partition(counts, len(counts) - k)[-k:]
    return float(top.sum() / max(code.size, 1))


def _line_profile(grey: np.ndarray, cfg: ContentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per row boundary and per column boundary, the share of pixels with a step > line_edge."""
    g = grey.astype(np.int16)
    rows = (np.abs(g[1:] - g[:-1]) > cfg.line_edge).mean(axis=1)
    cols = (np.abs(g[:, 1:] - g[:, :-1]) > cfg.line_edge).mean(axis=0)
    return rows, cols


def _count_lines(profile: np.ndarray, min_span: float) -> int:
    """Runs of boundaries above ``min_span`` (a thick line counts once), ignoring the outer 2."""
    above = profile[2:-2] >= min_span if len(profile) > 4 else np.zeros(0, bool)
    return int(np.sum(above[1:] & ~above[:-1]) + (above[0] if len(above) else 0))


def _seam(grey: np.ndarray, cfg: ContentConfig) -> float:
    """The centre-line discontinuity: for boundaries between columns within ``seam_band`` of the
    centre, the share of (frame, row) where the 2-pixel step across the boundary exceeds
    ``seam_contrast`` times the steps 3 pixels to either side (and ``seam_min_step``); the largest
    such share over the candidates. A side-by-side seam is such a step along most of the height in
    every frame; a natural edge covers part of the height and moves with the camera."""
    g = grey.astype(np.float32)  # (n, h, w)
    w = g.shape[2]
    if w < 24:
        return float("nan")
    d = np.abs(g[:, :, 2:] - g[:, :, :-2])  # d[..., x]: the step across column x + 1
    c = (w - 2) / 2 - 0.5
    r = max(1, int(round(cfg.seam_band * w)))
    best = 0.0
    for i in range(max(3, int(math.floor(c - r))), min(d.shape[2] - 3, int(math.ceil(c + r)) + 1)):
        a = d[:, :, i]
        hit = (a > cfg.seam_contrast * np.maximum(d[:, :, i - 3], d[:, :, i + 3])) & (a > cfg.seam_min_step)
        best = max(best, float(hit.mean()))
    return best


def _hf_ratio(grey: np.ndarray) -> float:
    """Spectral power at 0.6-1.0 of the Nyquist frequency over the power at 0.3-0.5 (Hann window,
    the larger of the two axis frequencies): content up-scaled by ``f`` has almost nothing above
    ``1 / f`` of the Nyquist frequency."""
    g = grey.astype(np.float32)
    g -= g.mean()
    h, w = g.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2(g * win)) ** 2
    r = np.maximum(np.abs(np.fft.fftfreq(h))[:, None] * 2, np.fft.rfftfreq(w)[None, :] * 2)
    mid = float(power[(r > 0.3) & (r <= 0.5)].sum())
    return float(power[(r > 0.6) & (r <= 1.0)].sum() / mid) if mid > 1e-6 else float("nan")


def _text(frames: np.ndarray, idx: np.ndarray, cfg: ContentConfig) -> dict:
    det = _text_detector(cfg)
    out = {"text_area": float("nan"), "text_persistent": float("nan"), "text_boxes": float("nan")}
    if det is None or len(idx) == 0:
        return out
    h, w = frames.shape[1:3]
    scale = min(1.0, cfg.ocr_max_side / max(h, w))
    masks, nboxes = [], []
    with _LOCK:
        for i in idx:
            img = cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR)
            if scale < 1.0:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            try:
                boxes, _ = det(img)
            except Exception:  # noqa: BLE001 - a frame the detector cannot take counts as no text
                boxes = None
            m = np.zeros(img.shape[:2], np.uint8)
            if boxes is not None and len(boxes):
                cv2.fillPoly(m, [np.round(b).astype(np.int32) for b in boxes], 1)
            masks.append(m)
            nboxes.append(0 if boxes is None else len(boxes))
    stack = np.stack(masks).astype(np.float32)
    need = max(1, math.ceil(cfg.persist_frac * len(masks) - 1e-9))
    out["text_area"] = float(stack.mean())
    out["text_persistent"] = float(np.mean(stack.sum(0) >= need)) if len(masks) >= 2 else float("nan")
    out["text_boxes"] = float(np.mean(nboxes))
    return out


def _people(frames: np.ndarray, idx: np.ndarray, cfg: ContentConfig) -> dict:
    out = {
        "face_frames": float("nan"),
        "face_area": float("nan"),
        "person_area": float("nan"),
        "person_persistent": float("nan"),
        "person_frames": float("nan"),
    }
    face, seg = _mediapipe("face", cfg), _mediapipe("selfie", cfg)
    if len(idx) == 0:
        return out
    faces, areas, person, masks = [], [], [], []
    with _LOCK:
        for i in idx:
            img = np.ascontiguousarray(frames[i])
            if face is not None:
                try:
                    res = face.process(img)
                except Exception:  # noqa: BLE001
                    res = None
                best, found = 0.0, False
                for d in (res.detections or []) if res is not None else []:
                    bb = d.location_data.relative_bounding_box
                    found = True
                    cx = bb.xmin + bb.width / 2
                    weight = float(np.clip(1.0 - abs(cx - 0.5) / cfg.face_centre_radius, 0.0, 1.0))
                    best = max(best, float(np.clip(bb.width, 0, 1) * np.clip(bb.height, 0, 1)) * weight)
                faces.append(found)
                areas.append(best)
            if seg is not None:
                try:
                    m = seg.process(img).segmentation_mask > cfg.person_threshold
                except Exception:  # noqa: BLE001
                    m = np.zeros(img.shape[:2], bool)
                masks.append(m)
                person.append(float(m.mean()))
    if faces:
        out["face_frames"] = float(np.mean(faces))
        out["face_area"] = float(np.median(areas))
    if masks:
        need = max(1, math.ceil(cfg.persist_frac * len(masks) - 1e-9))
        out["person_area"] = float(np.median(person))
        out["person_persistent"] = float(np.mean(np.sum(masks, axis=0) >= need)) if len(masks) >= 2 else float("nan")
        out["person_frames"] = float(np.mean(np.asarray(person) >= cfg.person_min_area))
    return out


def _worst(parts: list[float]) -> float:
    finite = [p for p in parts if p is not None and math.isfinite(p)]
    return float(min(finite)) if finite else float("nan")


def _num(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v if math.isfinite(v) and v > 0 else float("nan")


def run(frames: FilterFrames, cfg: ContentConfig | None = None, video: dict | None = None) -> FilterResult:
    cfg = cfg or ContentConfig()
    if cfg.combine not in ("mean", "paper"):
        raise ValueError(f"unknown combine {cfg.combine!r}; expected 'mean' or 'paper'")
    video = video or {}
    cols: dict = {name: None for name, _ in COLUMNS}
    n = len(frames)
    if n < cfg.min_frames:
        return FilterResult(None, Status.too_few_frames, f"{n} frames, need {cfg.min_frames}", cols)
    if min(frames.width, frames.height) < cfg.min_side:
        msg = f"frames {frames.width}x{frames.height}, need a side >= {cfg.min_side}"
        return FilterResult(None, "too_small", msg, cols)
    rgb_all = frames.frames
    if rgb_all.ndim != 4 or rgb_all.shape[3] != 3 or rgb_all.dtype != np.uint8:
        msg = f"frames of shape {rgb_all.shape} and type {rgb_all.dtype}, need (N, H, W, 3) uint8"
        return FilterResult(None, "bad_frames", msg, cols)
    times = np.asarray(frames.timestamps, np.float64)
    if len(times) != n or not np.all(np.isfinite(times)):
        times = np.arange(n, dtype=np.float64) / (frames.fps if frames.fps and frames.fps > 0 else 6.0)
    sidx = _pick(n, cfg.stats_frames)
    rgb = rgb_all[sidx]
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])
    if float(max(g.std() for g in grey)) < cfg.min_texture:
        return FilterResult(None, "uniform_frames", "every frame is a single flat colour", cols)
    H, W = grey.shape[1:]
    t, b, lft, r = _bars(grey, cfg)
    ch, cw = H - t - b, W - lft - r
    if ch < cfg.min_side or cw < cfg.min_side:
        return FilterResult(None, "uniform_frames", "the picture is almost all black bars", cols)
    letterbox = 1.0 - ch * cw / (H * W)
    crgb = rgb[:, t : H - b, lft : W - r]
    cgrey = grey[:, t : H - b, lft : W - r]
    cols["frames_used"] = int(len(sidx))

    # per-frame statistics
    few = _pick(len(crgb), cfg.still_frames)
    flat = float(np.median([_flat_share(crgb[i], cfg.flat_tol) for i in few]))
    palette = float(np.median([_palette_share(crgb[i], cfg.palette_colours) for i in few]))
    sharp = float(np.median([float(cv2.Laplacian(cgrey[i], cv2.CV_32F).var()) for i in few]))
    luma = float(np.median([float(g.mean()) for g in cgrey]))
    hf = float(np.nanmedian([_hf_ratio(cgrey[i]) for i in few])) if ch >= 16 and cw >= 16 else float("nan")

    # across frames: static pixels, static edges, change, persistent lines, the centre seam
    static, static_edges, changed = [], [], []
    for i, j in _pairs(times, sidx, cfg.pair_gap_s):
        ga = cv2.cvtColor(rgb_all[i, t : H - b, lft : W - r], cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(rgb_all[j, t : H - b, lft : W - r], cv2.COLOR_RGB2GRAY)
        diff = cv2.absdiff(ga, gb)
        same = diff <= cfg.static_tol
        # 2-D texture (both gradient directions, the smaller eigenvalue of the structure tensor): an
        # edge along the camera motion looks unchanged, a corner of a letter does not.
        edge = cv2.cornerMinEigenVal(ga, 3, 3) > cfg.corner_eig
        static.append(float(np.count_nonzero(same) / same.size))
        static_edges.append(float(np.count_nonzero(same & edge) / same.size))
        changed.append(float(np.count_nonzero(diff > cfg.change_tol) / diff.size))
    static_share = float(np.median(static)) if static else float("nan")
    static_edge_share = float(np.median(static_edges)) if static_edges else float("nan")
    changed_share = float(np.mean(changed)) if changed else float("nan")
    prof = [_line_profile(g, cfg) for g in cgrey]
    rows = np.mean([p[0] for p in prof], axis=0)
    colp = np.mean([p[1] for p in prof], axis=0)
    ui_lines = float(_count_lines(rows, cfg.line_min_span) + _count_lines(colp, cfg.line_min_span))
    seam = float(np.nanmax([_seam(cgrey, cfg), _seam(cgrey.transpose(0, 2, 1), cfg)]))

    brisque = float("nan")
    if _brisque_available(cfg):
        try:
            vals = [
                float(
                    cv2.quality.QualityBRISQUE_compute(
                        cv2.cvtColor(crgb[i], cv2.COLOR_RGB2BGR), cfg.brisque_model, cfg.brisque_range
                    )[0]
                )
                for i in _pick(len(crgb), 3)
            ]
            brisque = float(np.median(vals))
        except Exception:  # noqa: BLE001 - optional
            brisque = float("nan")

    text = _text(rgb_all, _pick(n, cfg.ocr_frames), cfg)
    people = _people(rgb_all, _pick(n, cfg.face_frames), cfg)

    sw, sh = _num(video.get("width")), _num(video.get("height"))
    if not (math.isfinite(sw) and math.isfinite(sh)):  # not in the row: the decoder's source size
        sw, sh = _num(frames.source_width), _num(frames.source_height)
    short = min(sw, sh) if math.isfinite(sw) and math.isfinite(sh) else float("nan")
    fps = _num(video.get("fps"))

    cols.update(text)
    cols.update(people)
    cols.update(
        static_edges=static_edge_share,
        flat_share=flat,
        palette_share=palette,
        static_share=static_share,
        ui_lines=ui_lines,
        seam=seam,
        letterbox=float(letterbox),
        sharpness=sharp,
        luma=luma,
        hf_ratio=hf,
        brisque=brisque,
        source_short_side=short,
        source_fps=fps,
        changed_share=changed_share,
    )

    overlay = _worst(
        [
            sigmoid_pass(cols["text_persistent"], cfg.max_text_persistent, cfg.text_persistent_width, False),
            sigmoid_pass(static_edge_share, cfg.max_static_edges, cfg.static_edges_width, False),
        ]
    )
    presenter = _worst(
        [
            sigmoid_pass(cols["face_area"], cfg.max_presenter_face, cfg.presenter_face_width, False),
            sigmoid_pass(cols["person_persistent"], cfg.max_person_persistent, cfg.person_persistent_width, False),
        ]
    )
    synthetic = _worst(
        [
            sigmoid_pass(flat, cfg.max_flat_share, cfg.flat_width, False),
            sigmoid_pass(palette, cfg.max_palette_share, cfg.palette_width, False),
            sigmoid_pass(static_share, cfg.max_static_share, cfg.static_width, False),
            sigmoid_pass(ui_lines, cfg.max_ui_lines, cfg.ui_lines_width, False),
        ]
    )
    composite = _worst(
        [
            sigmoid_pass(seam, cfg.max_seam, cfg.seam_width, False),
            sigmoid_pass(letterbox, cfg.max_letterbox, cfg.letterbox_width, False),
        ]
    )
    quality = _worst(
        [
            sigmoid_pass(sharp, cfg.min_sharpness, cfg.sharpness_width, True),
            sigmoid_pass(luma, cfg.min_luma, cfg.luma_width, True),
            sigmoid_pass(hf, cfg.min_hf_ratio, cfg.hf_width, True),
            sigmoid_pass(brisque, cfg.max_brisque, cfg.brisque_width, False),
        ]
    )
    fmt = _worst(
        [
            sigmoid_pass(short, cfg.min_short_side, cfg.short_side_width, True),
            sigmoid_pass(fps, cfg.min_fps, cfg.fps_width, True),
        ]
    )
    seen = [v for v in (cols["person_frames"], changed_share) if v is not None and math.isfinite(v)]
    activity = max(seen) if seen else float("nan")  # a person in the frames, or the content changes
    interaction = sigmoid_pass(activity, cfg.min_interaction, cfg.interaction_width, True)
    groups = dict(
        overlay_score=overlay,
        presenter_score=presenter,
        synthetic_score=synthetic,
        composite_score=composite,
        quality_score=quality,
        format_score=fmt,
    )
    acceptable = _worst(list(groups.values()))
    cols.update(groups)
    cols.update(interaction_score=interaction, acceptable_score=acceptable)
    if cfg.combine == "paper":
        score = mean_score([acceptable, interaction])
    else:
        score = mean_score([*groups.values(), interaction])
    for k, v in cols.items():
        if isinstance(v, float) and not math.isfinite(v):
            cols[k] = None
    if score is None:
        return FilterResult(None, "not_measurable", "no component could be measured", cols)
    return FilterResult(float(np.clip(score, 0.0, 1.0)), Status.ok, None, cols)
