"""Global bundle adjustment on static tracklets (DynPose-100K appendix A.3, "Global bundle adjustment").

Tracklets minus observations inside dynamic masks, with continued points linked across windows
into long tracks, become a COLMAP database that pycolmap maps:

- one camera shared by all frames (SIMPLE_RADIAL by default, focal guess ``focal_guess * max(W, H)``,
  focal and k1 refined by the mapper's bundle adjustment);
- one image per sampled frame; its keypoints are the track observations in that frame;
- matches: for every kept track, the pairs of its frames whose frame gap is in ``pair_gaps``
  (the paper takes every pair; a geometric ladder of gaps keeps short and long baselines at a
  fraction of the verification cost, and tracks are rebuilt whole from any connected pair set);
- two-view geometries verified by COLMAP's own RANSAC (``pycolmap.geometric_verification``);
- the GLOMAP-style global mapper (default, the paper's Theia global SfM counterpart) or COLMAP's
  incremental mapper, the other one as fallback when the first registers too few frames (the
  global mapper is first retried without its final re-triangulation, which can lose every point
  of a low-parallax clip).

The largest model becomes a :class:`dynpose.domain.camera.PoseResult`. A video that cannot be mapped
returns all frames unregistered with ``extra["reason"]``; only programming errors raise.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from dynpose.domain.annotate.decisions import MIN_REGISTERED
from dynpose.domain.annotate.tracking import Tracklets
from dynpose.domain.camera import PoseResult, image_centre
from dynpose.domain.colmap_io import colmap_log_level, pose_result_from_reconstruction, to_colmap_xy

log = logging.getLogger(__name__)


@dataclass
class SfmConfig:
    mapper: str = "global"  # "global" (GLOMAP) | "incremental" (COLMAP)
    fallback: bool = True  # run the other mapper when the first registers < min_registered (run_sfm's argument)
    camera_model: str = "SIMPLE_RADIAL"  # or "SIMPLE_PINHOLE"
    focal_guess: float = 1.2  # initial focal = focal_guess * max(W, H) (about a 45 degree FOV)
    calibrate_view_graph: bool = True  # estimate the focal from the fundamental matrices before mapping
    mask_policy: str = (
        "truncate"  # "truncate": a track ends at its first masked frame; "drop": drop masked observations only (paper)
    )
    mask_dilate: int = 2  # pixels: observations this close to a dynamic mask count as masked
    min_track_length: int = 3
    max_track_span: int | None = None  # split tracks into pieces of at most this many frames (less drift, but
    # short pieces cannot be triangulated on small-baseline clips: off by default)
    obs_per_frame: int = 400  # keep long tracks until every frame has this many observations (speed)
    pair_gaps: tuple[int, ...] | None = (1, 2, 4, 8, 16, 29)  # None: every pair in a track
    ransac_max_error: float = 2.0  # pixels, two-view verification
    min_num_inliers: int = 15
    ba_iterations: int = 3  # global mapper's BA / filter rounds
    mapper_options: dict = field(
        default_factory=dict
    )  # extra GlobalMapperOptions / IncrementalMapperOptions fields (dotted names)
    num_threads: int = -1
    seed: int = 0
    verbose: bool = False  # COLMAP's info log (off: warnings and errors only, while run_sfm runs)
    # Pose hypotheses (docs/annotation.md, "Pose hypotheses"): "first" keeps the first focal initialisation
    # whose mappers register min_registered (calibrated, then the guess); "self_consistency" maps the
    # initialisations of `focal_inits` in turn until one scores at most `consistency_accept` and keeps
    # the most self-consistent one (InterPose); "reprojection" keeps the lowest mean reprojection error.
    select: str = "self_consistency"
    focal_inits: tuple[str, ...] = ("calibrated", "guess")  # also "sweep": run_sfm's focal_hint (AnyCam)
    consistency_pairs: int = 16  # frame pairs scored per hypothesis
    consistency_subsets: int = 6  # random halves of a pair's tracks, one relative pose each
    consistency_gap: int = 6  # frames between the two frames of a scored pair
    # self_consistency only: stop at the first initialisation scoring at most this (degrees), so a
    # consistent video maps once; None: map every initialisation. 15: chosen on bench clips 000-013
    consistency_accept: float | None = 15.0
    # Per-track motion level (TracksTo4D, motion_level.py): after mapping, points whose Cauchy scale
    # exceeds gamma_max (px) are removed from the model and bundle adjustment runs again.
    motion_level: bool = False
    gamma_max: float = 3.0
    # the robust loss (scale px) of the BA after dropping them, and of the weighted refinement
    refine_loss: str = "trivial"  # trivial | cauchy | soft_l1 | huber
    refine_loss_scale: float = 1.0
    # AnyCam's uncertainty-weighted refinement (weighted_ba.py): per observation sigma = the track's
    # gamma + drift_px x frames from its query frame + mask_px next to a dynamic mask (falling to 0
    # at mask_reach px); observations above sigma_max are ignored, the others weighted linearly.
    # On by default: sigma_max 2 chosen on bench clips 000-013, better on 11 of the 13 held-out ones.
    weighted_refine: bool = True
    sigma_max: float = 2.0
    drift_px: float = 0.05
    mask_px: float = 1.0
    mask_reach: float = 10.0
    refine_evaluations: int = 10  # least-squares function evaluations at most (30: same ATE, 3x the time)
    # Wide-baseline bridging: frame pairs that share fewer than bridge_min_tracks tracks get SIFT
    # matches (outside the dynamic masks) across the break, verified like every other pair.
    bridge: bool = True
    bridge_min_tracks: int = 40
    bridge_span: int = 3  # frames on each side of a break matched across it
    bridge_features: int = 2000

    def __post_init__(self):
        if self.refine_loss not in ("trivial", "cauchy", "soft_l1", "huber"):
            raise ValueError(f"camera_poses.refine_loss: trivial, cauchy, soft_l1 or huber, not {self.refine_loss!r}")
        if self.select not in ("first", "self_consistency", "reprojection"):
            raise ValueError(f"camera_poses.select: first, self_consistency or reprojection, not {self.select!r}")
        unknown = set(self.focal_inits) - {"calibrated", "guess", "sweep"}
        if unknown or not self.focal_inits:
            raise ValueError(f"camera_poses.focal_inits: unknown {sorted(unknown)}; use calibrated, guess, sweep")


@dataclass
class Correspondences:
    """Static track observations: observation i is track ``track[i]`` seen at ``xy[i]`` in ``frame[i]``."""

    frame: np.ndarray  # (M,) int
    track: np.ndarray  # (M,) int, 0..num_tracks-1
    xy: np.ndarray  # (M, 2) float32, OpenCV pixel convention (pixel centres at integers)
    num_frames: int
    stats: dict = field(default_factory=dict)
    source: np.ndarray | None = None  # (M,) the tracklet point (window-major running index) it came from

    @property
    def num_tracks(self) -> int:
        return int(self.track.max()) + 1 if len(self.track) else 0


def _masked(masks: np.ndarray, frames: np.ndarray, xy: np.ndarray, dilate: int) -> np.ndarray:
    if dilate > 0:
        import cv2

        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        masks = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])
    h, w = masks.shape[1:]
    x = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    return masks[frames, y, x]


def build_correspondences(tracklets: Tracklets, masks: np.ndarray | None, cfg: SfmConfig) -> Correspondences:
    """Flatten tracklet windows into static track observations, masked and subsampled."""
    frames, tracks, xys, offsets = [], [], [], []
    next_id = 0
    for win in tracklets.windows:
        t_idx, p_idx = np.nonzero(win.visible)
        frames.append(win.frame_indices[t_idx])
        tracks.append(next_id + p_idx)
        xys.append(win.points[t_idx, p_idx])
        offsets.append(t_idx - win.query_offset)  # signed frames from the query frame
        next_id += win.visible.shape[1]
    if not frames:
        empty = np.zeros(0, int)
        return Correspondences(empty, empty, np.zeros((0, 2), np.float32), tracklets.num_frames, source=empty)
    frame, track, xy, off = (np.concatenate(a) for a in (frames, tracks, xys, offsets))
    source = track.copy()  # before linking, a track is one tracklet point
    stats = {"observations": len(frame)}
    if masks is not None and len(frame):
        bad = _masked(np.asarray(masks, bool), frame, xy, cfg.mask_dilate)
        if cfg.mask_policy == "truncate":
            # A track that touched a dynamic region may follow it from then on: cut it there, on
            # each side of the query frame (a masked query point cuts both sides).
            side, dist = track * 2 + (off < 0), np.abs(off)
            first = np.full(next_id * 2, np.iinfo(np.int64).max)
            np.minimum.at(first, side[bad], dist[bad])
            np.minimum.at(first, (track * 2 + 1)[bad & (dist == 0)], 0)
            bad = dist >= first[side]
        elif cfg.mask_policy != "drop":
            raise ValueError(f"unknown mask_policy {cfg.mask_policy!r}")
        frame, track, xy, source = frame[~bad], track[~bad], xy[~bad], source[~bad]
        stats["masked"] = int(bad.sum())
    frame, track, xy, source = _link_windows(tracklets, frame, track, xy, source)
    stats["linked_observations"] = len(frame)
    if cfg.max_track_span and len(frame):
        # Chained trackers drift; pieces of a track become separate 3-D points.
        start = np.full(int(track.max()) + 1, tracklets.num_frames)
        np.minimum.at(start, track, frame)
        piece = (frame - start[track]) // cfg.max_track_span
        track = track * (int(piece.max()) + 1) + piece
        _, track = np.unique(track, return_inverse=True)
    next_id = int(track.max()) + 1 if len(track) else 0
    # Keep tracks seen often enough, then the longest ones until every frame has its quota.
    length = np.bincount(track, minlength=next_id)
    keep = length >= cfg.min_track_length
    if cfg.obs_per_frame:
        keep = _select_tracks(frame, track, length, keep, tracklets.num_frames, cfg.obs_per_frame, cfg.seed)
    sel = keep[track]
    frame, track, xy, source = frame[sel], track[sel], xy[sel], source[sel]
    _, track = np.unique(track, return_inverse=True)
    stats.update(kept_observations=len(frame), tracks=int(track.max()) + 1 if len(track) else 0)
    return Correspondences(frame, track, xy.astype(np.float32), tracklets.num_frames, stats, source)


def _link_windows(tracklets: Tracklets, frame: np.ndarray, track: np.ndarray, xy: np.ndarray, source: np.ndarray):
    """Merge a window's continued points (``TrackWindow.continues``) into the tracks they continue.

    A link holds only where both ends survived masking at the new window's query frame; the
    windows' identical observations over their overlap collapse to one per (track, frame).
    """
    n = tracklets.num_frames
    base = np.cumsum([0] + [w.visible.shape[1] for w in tracklets.windows])
    root = np.arange(base[-1])
    kept = np.unique(track * n + frame)
    for k in range(1, len(tracklets.windows)):
        win = tracklets.windows[k]
        p = np.flatnonzero(win.continues >= 0)
        if not len(p):
            continue
        new, old = base[k] + p, base[k - 1] + win.continues[p]
        ok = np.isin(new * n + win.query_frame, kept) & np.isin(old * n + win.query_frame, kept)
        root[new[ok]] = root[old[ok]]  # windows in order: the old end is already resolved
    track = root[track]
    _, first = np.unique(track * n + frame, return_index=True)
    _, track = np.unique(track[first], return_inverse=True)
    return frame[first], track, xy[first], source[first]


def _select_tracks(frame, track, length, keep, num_frames, quota, seed) -> np.ndarray:
    order = np.flatnonzero(keep)
    rng = np.random.default_rng(seed)
    order = order[np.lexsort((rng.random(len(order)), -length[order]))]  # longest first, random ties
    by_track = np.split(
        frame[np.argsort(track, kind="stable")], np.cumsum(np.bincount(track, minlength=len(length)))[:-1]
    )
    count = np.zeros(num_frames, int)
    out = np.zeros(len(length), bool)
    for tid in order:
        f = by_track[tid]
        if count[f].min() < quota:
            out[tid] = True
            count[f] += 1
    return out


def _frame_pairs(frames: np.ndarray, gaps: tuple[int, ...] | None) -> list[tuple[int, int]]:
    frames = np.sort(frames)
    if gaps is None:
        return [(a, b) for i, a in enumerate(frames) for b in frames[i + 1 :]]
    present = set(frames.tolist())
    return [(a, a + g) for a in frames for g in gaps if a + g in present]


def write_database(
    path: Path,
    corr: Correspondences,
    width: int,
    height: int,
    cfg: SfmConfig,
    bridges: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Write cameras, images, keypoints and matches; returns stats. Image i is frame i (name-coded).

    A frame's keypoints are its track observations in track order, then its bridge keypoints
    (``bridges``: frame pair -> matched (K, 2) pixel coordinates in each frame)."""
    import pycolmap

    focal = cfg.focal_guess * max(width, height)
    cx, cy = to_colmap_xy(image_centre(width, height))  # COLMAP's (W / 2, H / 2)
    params = [focal, float(cx), float(cy)] + ([0.0] if cfg.camera_model == "SIMPLE_RADIAL" else [])
    camera = pycolmap.Camera(model=cfg.camera_model, width=width, height=height, params=params)
    # Per-frame keypoints: the observations of that frame in track order; kp_index maps obs -> keypoint.
    order = np.lexsort((corr.track, corr.frame))
    kp_index = np.empty(len(order), np.int64)
    counts = np.bincount(corr.frame, minlength=corr.num_frames)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    kp_index[order] = np.arange(len(order)) - starts[corr.frame[order]]
    pairs: dict[tuple[int, int], list[np.ndarray]] = {}
    by_track = np.argsort(corr.track, kind="stable")
    bounds = np.cumsum(np.bincount(corr.track, minlength=corr.num_tracks))[:-1]
    for obs in np.split(by_track, bounds):
        f = corr.frame[obs]
        pos = dict(zip(f.tolist(), kp_index[obs].tolist()))
        for a, b in _frame_pairs(f, cfg.pair_gaps):
            pairs.setdefault((a, b), []).append(np.array([pos[a], pos[b]]))
    extra_xy: list[list[np.ndarray]] = [[] for _ in range(corr.num_frames)]
    n_extra = counts.copy()
    for (a, b), (xa, xb) in (bridges or {}).items():
        ia, ib = n_extra[a] + np.arange(len(xa)), n_extra[b] + np.arange(len(xb))
        extra_xy[a].append(xa)
        extra_xy[b].append(xb)
        n_extra[a] += len(xa)
        n_extra[b] += len(xb)
        pairs.setdefault((a, b), []).extend(np.stack([ia, ib], axis=1))
    with pycolmap.Database.open(str(path)) as db:
        cam_id = db.write_camera(camera)
        ids = []
        for i in range(corr.num_frames):
            ids.append(db.write_image(pycolmap.Image(name=f"{i:06d}.png", camera_id=cam_id)))
            # COLMAP puts pixel centres at +0.5; ours (OpenCV) at integers.
            xy = np.concatenate([corr.xy[order[starts[i] : starts[i] + counts[i]]].reshape(-1, 2), *extra_xy[i]])
            db.write_keypoints(ids[-1], to_colmap_xy(xy).astype(np.float32).reshape(-1, 2))
        for (a, b), m in pairs.items():
            if len(m) >= cfg.min_num_inliers:
                db.write_matches(ids[a], ids[b], np.asarray(m, np.uint32))
    return {
        "pairs": sum(len(m) >= cfg.min_num_inliers for m in pairs.values()),
        "matches": int(sum(len(m) for m in pairs.values())),
        "bridge_pairs": len(bridges or {}),
        "bridge_matches": int(sum(len(xa) for xa, _ in (bridges or {}).values())),
    }


def _verify(db_path: Path, cfg: SfmConfig) -> None:
    import pycolmap

    tvg = pycolmap.TwoViewGeometryOptions()
    tvg.ransac.max_error = cfg.ransac_max_error
    tvg.ransac.random_seed = cfg.seed
    tvg.min_num_inliers = cfg.min_num_inliers
    tvg.detect_watermark = False  # grid tracks near the border are not watermarks
    ver = pycolmap.GeometricVerifierOptions()
    ver.num_threads = cfg.num_threads
    pycolmap.geometric_verification(str(db_path), verifier_options=ver, two_view_geometry_options=tvg)


def _initialise_focal(db_path: Path, init: str, focal: float) -> None:
    """Set the shared camera's initial focal: from the view graph (``calibrated``) or ``focal`` px."""
    import pycolmap

    if init == "calibrated":
        pycolmap.calibrate_view_graph(str(db_path))
        return
    with pycolmap.Database.open(str(db_path)) as db:
        camera = db.read_all_cameras()[0]
        params = np.array(camera.params)
        params[0] = focal
        camera.params = params
        db.update_camera(camera)


def _apply(opts, overrides: dict) -> None:
    for name, value in overrides.items():
        *path, last = name.split(".")
        target = opts
        for part in path:
            target = getattr(target, part)
        setattr(target, last, value)


def _map(db_path: Path, out: Path, mapper: str, cfg: SfmConfig) -> dict:
    import pycolmap

    if mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.random_seed = cfg.seed
        opts.num_threads = cfg.num_threads
        opts.min_num_matches = cfg.min_num_inliers
        opts.mapper.ba_num_iterations = cfg.ba_iterations
        opts.mapper.global_positioning.use_gpu = False
        opts.mapper.bundle_adjustment.ceres.use_gpu = False
        _apply(opts.mapper, cfg.mapper_options)
        return pycolmap.global_mapping(str(db_path), str(out), str(out), opts)
    if mapper == "incremental":
        opts = pycolmap.IncrementalPipelineOptions()
        opts.random_seed = cfg.seed
        opts.num_threads = cfg.num_threads
        opts.min_num_matches = cfg.min_num_inliers
        opts.extract_colors = False
        opts.min_model_size = 3
        # COLMAP's 16 degree initial-pair angle suits photo collections, not a few seconds of video.
        opts.mapper.init_min_tri_angle = 4.0
        _apply(opts.mapper, cfg.mapper_options)
        return pycolmap.incremental_mapping(str(db_path), str(out), str(out), opts)
    raise ValueError(f"unknown mapper {mapper!r}")


def _to_result(rec, timestamps: np.ndarray, width: int, height: int, mapper: str) -> PoseResult:
    """The shared COLMAP conversion (pixel convention included); image ``i`` is frame ``i`` (name-coded)."""
    return pose_result_from_reconstruction(
        rec,
        timestamps,
        width,
        height,
        lambda name: int(name.split(".")[0]),
        extra={"mapper": mapper},
    )


def failed_result(
    timestamps: np.ndarray, width: int, height: int, reason: str, cfg: SfmConfig | None = None, **extra
) -> PoseResult:
    """All frames unregistered, the initial intrinsics guess (``cfg.focal_guess``), and why."""
    cfg = cfg or SfmConfig()
    return PoseResult.unregistered(
        timestamps, width, height, reason, focal=cfg.focal_guess * max(width, height), **extra
    )


def run_sfm(
    tracklets: Tracklets,
    masks: np.ndarray | None,
    timestamps: np.ndarray,
    cfg: SfmConfig | None = None,
    work_dir: str | Path | None = None,
    min_registered: float = MIN_REGISTERED,
    focal_hint: float | None = None,
    frames: np.ndarray | Callable[[], np.ndarray] | None = None,
) -> PoseResult:
    """Camera poses and shared intrinsics from static tracklets; never raises for a bad video.

    Pose hypotheses (a focal initialisation, each with its chain of mappers) are mapped in turn;
    ``cfg.select`` says which one is kept (module docstring). ``min_registered`` is the share of
    frames a video's status is judged by (``annotation_checks.min_registered``). ``focal_hint``
    (px, e.g. the focal filter's candidate sweep) is the ``sweep`` initialisation; ``frames``
    ((N, H, W[, 3]) uint8, the tracked frames, or a function that decodes them: called only where
    tracks break) are needed for wide-baseline bridging only."""
    cfg = cfg or SfmConfig()
    # the global mapper warns about every missing image file
    with colmap_log_level(0 if cfg.verbose else 2):
        return _run_sfm(tracklets, masks, timestamps, cfg, work_dir, min_registered, focal_hint, frames)


@dataclass
class Hypothesis:
    """One mapped pose hypothesis: a focal initialisation and the best model its mappers gave."""

    name: str  # the focal initialisation: calibrated | guess | sweep
    initial_focal: float  # px (calibrated: what the view-graph calibration wrote)
    result: PoseResult | None = None
    reconstruction: object = None  # the pycolmap.Reconstruction behind ``result``
    self_consistency: float = float("nan")

    def summary(self, chosen: bool) -> dict:
        r = self.result
        return {
            "name": self.name,
            "initial_focal": self.initial_focal,
            "focal": r.intrinsics.fx if r is not None else float("nan"),
            "registered_ratio": r.registered_ratio if r is not None else 0.0,
            "reprojection_error": r.reprojection_error if r is not None else float("nan"),
            "self_consistency": self.self_consistency,
            "chosen": chosen,
        }


def _map_chain(
    db_path: Path,
    tmp: Path,
    timestamps: np.ndarray,
    w: int,
    h: int,
    cfg: SfmConfig,
    hyp: Hypothesis,
    timings: dict,
    attempts: list,
    min_registered: float,
) -> None:
    """Run the mappers in turn on a verified database until one registers ``min_registered``."""
    mappers = [(cfg.mapper, True)] + (
        [(m, True) for m in ("global", "incremental") if m != cfg.mapper] if cfg.fallback else []
    )
    if cfg.fallback and not cfg.mapper_options.get("skip_retriangulation"):
        # The global mapper's last step re-triangulates every point from the database; on low-parallax
        # clips (a slow forward dolly) it can drop all of them and discard a good model. Keep it then.
        mappers.insert(mappers.index(("global", True)) + 1, ("global", False))
    for mapper, retriangulate in mappers:
        name = mapper if retriangulate else f"{mapper}_no_retriangulation"
        out = tmp / f"{hyp.name}_{name}"
        out.mkdir()
        t0 = time.perf_counter()
        try:
            recs = _map(
                db_path,
                out,
                mapper,
                cfg
                if retriangulate
                else replace(cfg, mapper_options={**cfg.mapper_options, "skip_retriangulation": True}),
            )
        except Exception as exc:  # pycolmap raises plain RuntimeError on degenerate input
            log.warning("%s mapper failed: %s", name, exc)
            recs = {}
        timings[f"{name}_mapping_{hyp.name}_s"] = time.perf_counter() - t0
        attempt = {
            "mapper": name,
            "focal_init": hyp.name,
            "calibrated_focal": hyp.name == "calibrated",
            "registered_ratio": 0.0,
            "models": len(recs),
        }
        if recs:
            rec = max(recs.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))
            result = _to_result(rec, timestamps, w, h, name)
            attempt.update(registered_ratio=result.registered_ratio, focal_ratio=result.intrinsics.fx / max(w, h))
            if hyp.result is None or result.registered_ratio > hyp.result.registered_ratio:
                hyp.result, hyp.reconstruction = result, rec
        attempts.append(attempt)
        if hyp.result is not None and hyp.result.registered_ratio >= min_registered:
            break


def _focal_inits(cfg: SfmConfig, focal_hint: float | None, w: int, h: int) -> list[tuple[str, float]]:
    guess = cfg.focal_guess * max(w, h)
    if cfg.select == "first":
        # The view-graph calibration helps most clips, but a wrong focal from it can leave every
        # mapper with nothing to triangulate (a low-parallax dolly): then map again from the guess.
        names = ["calibrated", "guess"] if cfg.calibrate_view_graph else ["guess"]
    else:
        names = list(cfg.focal_inits)
    usable = focal_hint is not None and np.isfinite(focal_hint) and focal_hint > 0
    return [(n, float(focal_hint) if n == "sweep" else guess) for n in names if n != "sweep" or usable]


def _choose(hyps: list[Hypothesis], cfg: SfmConfig, min_registered: float) -> Hypothesis | None:
    mapped = [hy for hy in hyps if hy.result is not None]
    if not mapped:
        return None
    good = [hy for hy in mapped if hy.result.registered_ratio >= min_registered]
    if not good:
        return max(mapped, key=lambda hy: hy.result.registered_ratio)
    if cfg.select == "self_consistency":
        return min(good, key=lambda hy: (np.nan_to_num(hy.self_consistency, nan=np.inf), -hy.result.registered_ratio))
    if cfg.select == "reprojection":
        return min(good, key=lambda hy: hy.result.reprojection_error)
    return good[0]


def _run_sfm(
    tracklets, masks, timestamps, cfg: SfmConfig, work_dir, min_registered: float, focal_hint, frames
) -> PoseResult:
    import pycolmap

    w, h = tracklets.width, tracklets.height
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    corr = build_correspondences(tracklets, masks, cfg)
    timings["correspondences_s"] = time.perf_counter() - t0
    if corr.num_tracks < 20:
        return failed_result(timestamps, w, h, "too few static tracks", cfg, stats=corr.stats, timings=timings)
    stats = dict(corr.stats)
    bridges = None
    if cfg.bridge and frames is not None:
        t0 = time.perf_counter()
        bridges = bridge_matches(frames, corr, masks, cfg)
        timings["bridging_s"] = time.perf_counter() - t0
    hyps: list[Hypothesis] = []
    attempts: list[dict] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "verified.db"
        t0 = time.perf_counter()
        stats.update(write_database(base, corr, w, h, cfg, bridges))
        timings["database_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _verify(base, cfg)
        timings["verification_s"] = time.perf_counter() - t0
        with pycolmap.Database.open(str(base)) as db:
            stats["verified_pairs"] = int(db.num_verified_image_pairs())
        if stats["verified_pairs"] == 0:
            return failed_result(timestamps, w, h, "no verified image pair", cfg, stats=stats, timings=timings)
        for name, focal in _focal_inits(cfg, focal_hint, w, h):
            db_path = tmp / f"{name}.db"
            shutil.copyfile(base, db_path)
            t0 = time.perf_counter()
            _initialise_focal(db_path, name, focal)
            if name == "calibrated":
                with pycolmap.Database.open(str(db_path)) as db:
                    focal = float(db.read_all_cameras()[0].params[0])
                timings["calibration_s"] = time.perf_counter() - t0
            hyp = Hypothesis(name, focal)
            _map_chain(db_path, tmp, timestamps, w, h, cfg, hyp, timings, attempts, min_registered)
            hyps.append(hyp)
            if hyp.result is None or hyp.result.registered_ratio < min_registered:
                continue
            t0 = time.perf_counter()
            hyp.self_consistency = self_consistency(hyp.result, corr, cfg)
            timings[f"self_consistency_{name}_s"] = time.perf_counter() - t0
            if cfg.select == "first":
                break
            accept = cfg.consistency_accept
            if cfg.select == "self_consistency" and accept is not None and hyp.self_consistency <= accept:
                break
    best = _choose(hyps, cfg, min_registered)
    if best is None:
        return failed_result(
            timestamps, w, h, "mapper produced no model", cfg, stats=stats, timings=timings, attempts=attempts
        )
    result = best.result
    gamma = None
    if cfg.motion_level:
        t0 = time.perf_counter()
        result, gamma, dropped = _drop_moving_points(best, tracklets, corr, timestamps, w, h, cfg)
        stats["motion_level_dropped_observations"] = dropped
        timings["motion_level_s"] = time.perf_counter() - t0
    if cfg.weighted_refine:
        t0 = time.perf_counter()
        result, gamma, stats["weighted_refine"] = _weighted_refine(
            best, result, gamma, tracklets, masks, corr, timestamps, w, h, cfg
        )
        timings["weighted_refine_s"] = time.perf_counter() - t0
    result.extra.update(
        stats=stats,
        timings=timings,
        attempts=attempts,
        focal_init=best.name,
        self_consistency=best.self_consistency,
        hypotheses=[hy.summary(hy is best) for hy in hyps],
        hypothesis_results=[hy.result for hy in hyps],
    )
    if gamma is not None:
        result.extra["track_gamma"] = gamma
    return result


# -- self-consistency (InterPose) -------------------------------------------------------------------


def _normalised(xy: np.ndarray, result: PoseResult) -> np.ndarray:
    from dynpose.domain.annotate.motion_level import undistort_normalised

    k = result.intrinsics
    return undistort_normalised((xy - [k.cx, k.cy]) / [k.fx, k.fy], float(result.extra.get("radial_k1") or 0.0))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _rotation_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def self_consistency(result: PoseResult, corr: Correspondences, cfg: SfmConfig) -> float:
    """See :func:`_self_consistency`; run on one OpenCV thread from a fixed seed, as RANSAC's random
    draws otherwise depend on the thread count (Ray workers run one thread) and give another score."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    cv2.setRNGSeed(cfg.seed)
    try:
        return _self_consistency(result, corr, cfg)
    finally:
        cv2.setNumThreads(threads)


def _self_consistency(result: PoseResult, corr: Correspondences, cfg: SfmConfig) -> float:
    """How well a hypothesis agrees with relative poses estimated from random subsets of its tracks.

    For ``consistency_pairs`` registered frame pairs ``consistency_gap`` apart, each of
    ``consistency_subsets`` random halves of the pair's common tracks gives a relative pose
    (5-point RANSAC in the hypothesis's own normalised camera); the hypothesis scores the
    distance (rotation angle + translation-direction angle, degrees) between its relative pose
    and the medoid of those estimates, and the video's score is the median over pairs. Lower is
    more consistent; a wrong focal or a broken model disagrees with its own evidence. NaN when
    no pair can be scored."""
    import cv2

    reg = result.registered
    gap = cfg.consistency_gap
    candidates = [i for i in range(corr.num_frames - gap) if reg[i] and reg[i + gap]]
    if not candidates:
        return float("nan")
    picks = np.linspace(0, len(candidates) - 1, min(cfg.consistency_pairs, len(candidates))).round().astype(int)
    rng = np.random.default_rng(cfg.seed)
    f = result.intrinsics.fx
    scores = []
    for i in sorted({candidates[k] for k in picks}):  # evenly spread over the registered frames
        j = i + gap
        a, b = corr.frame == i, corr.frame == j
        common, ia, ib = np.intersect1d(corr.track[a], corr.track[b], return_indices=True)
        if len(common) < 16:
            continue
        xa = _normalised(corr.xy[a][ia].astype(np.float64), result)
        xb = _normalised(corr.xy[b][ib].astype(np.float64), result)
        Ri, ti = result.poses_w2c[i, :, :3], result.poses_w2c[i, :, 3]
        Rj, tj = result.poses_w2c[j, :, :3], result.poses_w2c[j, :, 3]
        R_h = Rj @ Ri.T
        t_h = tj - R_h @ ti
        estimates = []
        for _ in range(cfg.consistency_subsets):
            sub = rng.choice(len(common), size=max(8, len(common) // 2), replace=False)
            E, inl = cv2.findEssentialMat(
                xa[sub], xb[sub], np.eye(3), method=cv2.RANSAC, prob=0.999, threshold=cfg.ransac_max_error / f
            )
            if E is None or E.shape != (3, 3):
                continue
            _, R, t, _ = cv2.recoverPose(E, xa[sub], xb[sub], np.eye(3), mask=inl)
            estimates.append((R, t.ravel()))
        if not estimates:
            continue

        def dist(p, q):
            return _rotation_deg(p[0] @ q[0].T) + (_angle_deg(p[1], q[1]) if np.linalg.norm(q[1]) > 1e-9 else 0.0)

        medoid = min(estimates, key=lambda e: sum(dist(e, o) for o in estimates))
        scores.append(dist((R_h, t_h), medoid))
    # rounded: the last bits depend on the BLAS thread count, and equal inputs should score equally
    return round(float(np.median(scores)), 6) if scores else float("nan")


# -- per-track motion level (TracksTo4D) ------------------------------------------------------------


def _drop_moving_points(best: Hypothesis, tracklets, corr: Correspondences, timestamps, w, h, cfg: SfmConfig):
    """Remove the model's observations of tracklet points whose gamma exceeds ``cfg.gamma_max``,
    bundle-adjust again, and return (result, gamma per window, observations removed)."""
    import pycolmap

    from dynpose.domain.annotate.motion_level import track_gamma

    gamma = track_gamma(tracklets, best.result)
    moving_source = np.nan_to_num(np.concatenate(gamma), nan=0.0) > cfg.gamma_max if gamma else np.zeros(0, bool)
    rec = best.reconstruction
    dropped = 0
    for image_id, image in list(rec.images.items()):
        if not image.has_pose:
            continue
        source = _keypoint_sources(corr, int(image.name.split(".")[0]), len(image.points2D))
        for k, p2d in enumerate(image.points2D):
            if p2d.has_point3D() and source[k] >= 0 and moving_source[source[k]]:
                rec.delete_observation(image_id, k)
                dropped += 1
    if dropped or cfg.refine_loss != "trivial":
        options = pycolmap.BundleAdjustmentOptions()
        options.refine_extra_params = cfg.camera_model == "SIMPLE_RADIAL"
        options.print_summary = cfg.verbose
        options.ceres.loss_function_type = pycolmap.LossFunctionType.__members__[cfg.refine_loss.upper()]
        options.ceres.loss_function_scale = cfg.refine_loss_scale
        try:
            pycolmap.bundle_adjustment(rec, options)
        except Exception as exc:  # keep the first model if BA fails on what is left
            log.warning("bundle adjustment after dropping moving points failed: %s", exc)
            return best.result, gamma, 0
    result = _to_result(rec, timestamps, w, h, best.result.extra.get("mapper", ""))
    return result, gamma, dropped


def _keypoint_sources(corr: Correspondences, frame: int, num_keypoints: int) -> np.ndarray:
    """The tracklet point (``corr.source``) of each keypoint of ``frame``'s image; -1 for bridge keypoints.

    Keypoint k of frame i is the k-th observation of that frame in track order (write_database);
    bridge keypoints come after the track ones and have no tracklet point."""
    in_frame = np.flatnonzero(corr.frame == frame)
    in_frame = in_frame[np.argsort(corr.track[in_frame], kind="stable")]
    out = -np.ones(num_keypoints, np.int64)
    n = min(num_keypoints, len(in_frame))
    out[:n] = corr.source[in_frame[:n]]
    return out


def _weighted_refine(best: Hypothesis, result: PoseResult, gamma, tracklets, masks, corr, timestamps, w, h, cfg):
    """AnyCam's uncertainty-weighted final BA (weighted_ba.py) on the kept model; returns (result,
    gamma per window, summary). The model is left as it was if the refinement fails."""
    import cv2

    from dynpose.domain.annotate import weighted_ba
    from dynpose.domain.annotate.motion_level import track_gamma

    if gamma is None:
        gamma = track_gamma(tracklets, result)
    point_gamma = np.concatenate(gamma) if gamma else np.zeros(0)
    query = (
        np.concatenate([np.full(win.points.shape[1], win.query_frame) for win in tracklets.windows]) if gamma else []
    )
    rec = best.reconstruction
    obs = weighted_ba.observations(rec)
    frame_of_image = np.array([int(rec.images[i].name.split(".")[0]) for i in obs.image_ids])
    frame = frame_of_image[obs.image]
    source = np.full(len(frame), -1, np.int64)
    for k, image_id in enumerate(obs.image_ids):
        sel = obs.image == k
        source[sel] = _keypoint_sources(corr, frame_of_image[k], len(rec.images[image_id].points2D))[obs.point2d[sel]]
    tracked = source >= 0  # bridge matches: no track, no drift, no motion level
    g = np.zeros(len(frame))
    age = np.zeros(len(frame))
    g[tracked] = point_gamma[source[tracked]]
    age[tracked] = frame[tracked] - np.asarray(query)[source[tracked]]
    distance = None
    if masks is not None and cfg.mask_reach > 0:
        distance = np.empty(len(frame))
        xy = np.clip(np.round(obs.xy - 0.5).astype(int), 0, [w - 1, h - 1])  # COLMAP pixel centres at +0.5
        for f in np.unique(frame):
            d = cv2.distanceTransform((~np.asarray(masks[f], bool)).astype(np.uint8), cv2.DIST_L2, 3)
            sel = frame == f
            distance[sel] = d[xy[sel, 1], xy[sel, 0]]
    sigma = weighted_ba.uncertainty(g, age, distance, cfg.drift_px, cfg.mask_px, cfg.mask_reach)
    weights = weighted_ba.linear_weights(sigma, cfg.sigma_max)
    loss = "linear" if cfg.refine_loss == "trivial" else cfg.refine_loss
    try:
        summary = weighted_ba.weighted_bundle_adjustment(
            rec, obs, weights, loss, cfg.refine_loss_scale, cfg.refine_evaluations
        )
    except Exception as exc:  # keep the mapped model
        log.warning("weighted refinement failed: %s", exc)
        return result, gamma, {"error": str(exc)}
    refined = _to_result(rec, timestamps, w, h, result.extra.get("mapper", ""))
    summary["mean_weight"] = float(weights.mean()) if len(weights) else float("nan")
    return refined, gamma, summary


# -- wide-baseline bridging ---------------------------------------------------------------------------


def track_breaks(corr: Correspondences, min_tracks: int) -> list[int]:
    """Frames ``i`` whose step to ``i + 1`` fewer than ``min_tracks`` tracks survive."""
    n = corr.num_frames
    key = corr.track.astype(np.int64) * (n + 1) + corr.frame
    nxt = np.isin(key + 1, key)  # the same track is seen in the next frame
    shared = np.bincount(corr.frame[nxt], minlength=n)
    return [i for i in range(n - 1) if shared[i] < min_tracks]


def bridge_matches(
    frames: np.ndarray | Callable[[], np.ndarray], corr: Correspondences, masks: np.ndarray | None, cfg: SfmConfig
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """SIFT matches (OpenCV, ratio test, outside the dynamic masks) between the frames on either side
    of each track break: pairs (i - d, i + 1 + d) for d < ``bridge_span``. Verified later with
    every other pair by COLMAP's RANSAC."""
    import cv2

    breaks = track_breaks(corr, cfg.bridge_min_tracks)
    if not breaks:
        return {}
    frames = frames() if callable(frames) else frames
    n = len(frames)
    pairs = sorted(
        {
            (i - d, i + 1 + e)
            for i in breaks
            for d in range(cfg.bridge_span)
            for e in range(cfg.bridge_span)
            if i - d >= 0 and i + 1 + e < n and d + e < cfg.bridge_span
        }
    )
    sift = cv2.SIFT_create(nfeatures=cfg.bridge_features)
    features: dict[int, tuple] = {}

    def detect(i):
        if i not in features:
            gray = frames[i] if frames[i].ndim == 2 else cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
            keep = None
            if masks is not None:
                keep = (~np.asarray(masks[i], bool)).astype(np.uint8) * 255
            kps, desc = sift.detectAndCompute(gray, keep)
            features[i] = (np.array([k.pt for k in kps], np.float32).reshape(-1, 2), desc)
        return features[i]

    matcher = cv2.BFMatcher(cv2.NORM_L2)
    out = {}
    for a, b in pairs:
        (pa_, da), (pb, db) = detect(a), detect(b)
        if da is None or db is None or len(da) < 2 or len(db) < 2:
            continue
        good = [m for m, m2 in matcher.knnMatch(da, db, k=2) if m.distance < 0.8 * m2.distance]
        if len(good) >= cfg.min_num_inliers:
            out[(a, b)] = (pa_[[m.queryIdx for m in good]], pb[[m.trainIdx for m in good]])
    return out
