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
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dynpose.domain.annotate.decisions import MIN_REGISTERED
from dynpose.domain.annotate.tracking import Tracklets
from dynpose.domain.camera import PoseResult, image_centre
from dynpose.domain.colmap_io import pose_result_from_reconstruction, to_colmap_xy

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


@dataclass
class Correspondences:
    """Static track observations: observation i is track ``track[i]`` seen at ``xy[i]`` in ``frame[i]``."""

    frame: np.ndarray  # (M,) int
    track: np.ndarray  # (M,) int, 0..num_tracks-1
    xy: np.ndarray  # (M, 2) float32, OpenCV pixel convention (pixel centres at integers)
    num_frames: int
    stats: dict = field(default_factory=dict)

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
        return Correspondences(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2), np.float32), tracklets.num_frames)
    frame, track, xy, off = (np.concatenate(a) for a in (frames, tracks, xys, offsets))
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
        frame, track, xy, off = frame[~bad], track[~bad], xy[~bad], off[~bad]
        stats["masked"] = int(bad.sum())
    frame, track, xy = _link_windows(tracklets, frame, track, xy)
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
    frame, track, xy = frame[sel], track[sel], xy[sel]
    _, track = np.unique(track, return_inverse=True)
    stats.update(kept_observations=len(frame), tracks=int(track.max()) + 1 if len(track) else 0)
    return Correspondences(frame, track, xy.astype(np.float32), tracklets.num_frames, stats)


def _link_windows(tracklets: Tracklets, frame: np.ndarray, track: np.ndarray, xy: np.ndarray):
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
    return frame[first], track, xy[first]


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


def write_database(path: Path, corr: Correspondences, width: int, height: int, cfg: SfmConfig) -> dict:
    """Write cameras, images, keypoints and matches; returns stats. Image i is frame i (name-coded)."""
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
    with pycolmap.Database.open(str(path)) as db:
        cam_id = db.write_camera(camera)
        ids = []
        for i in range(corr.num_frames):
            ids.append(db.write_image(pycolmap.Image(name=f"{i:06d}.png", camera_id=cam_id)))
            # COLMAP puts pixel centres at +0.5; ours (OpenCV) at integers.
            xy = to_colmap_xy(corr.xy[order[starts[i] : starts[i] + counts[i]]])
            db.write_keypoints(ids[-1], xy.astype(np.float32).reshape(-1, 2))
        for (a, b), m in pairs.items():
            if len(m) >= cfg.min_num_inliers:
                db.write_matches(ids[a], ids[b], np.asarray(m, np.uint32))
    return {
        "pairs": sum(len(m) >= cfg.min_num_inliers for m in pairs.values()),
        "matches": int(sum(len(m) for m in pairs.values())),
    }


def _verify(db_path: Path, cfg: SfmConfig, calibrate: bool) -> None:
    import pycolmap

    tvg = pycolmap.TwoViewGeometryOptions()
    tvg.ransac.max_error = cfg.ransac_max_error
    tvg.ransac.random_seed = cfg.seed
    tvg.min_num_inliers = cfg.min_num_inliers
    tvg.detect_watermark = False  # grid tracks near the border are not watermarks
    ver = pycolmap.GeometricVerifierOptions()
    ver.num_threads = cfg.num_threads
    pycolmap.geometric_verification(str(db_path), verifier_options=ver, two_view_geometry_options=tvg)
    if calibrate:
        pycolmap.calibrate_view_graph(str(db_path))


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
) -> PoseResult:
    """Camera poses and shared intrinsics from static tracklets; never raises for a bad video.

    The mapper hypotheses are tried in turn until one registers ``min_registered`` of the frames
    (the threshold a video's status is judged by: ``annotation_checks.min_registered``)."""
    import pycolmap

    cfg = cfg or SfmConfig()
    level = int(pycolmap.logging.minloglevel)
    if not cfg.verbose:
        pycolmap.logging.minloglevel = max(level, 2)  # the global mapper warns about every missing image file
    try:
        return _run_sfm(tracklets, masks, timestamps, cfg, work_dir, min_registered)
    finally:
        pycolmap.logging.minloglevel = level


def _map_database(
    tmp: Path,
    corr: Correspondences,
    timestamps: np.ndarray,
    w: int,
    h: int,
    cfg: SfmConfig,
    calibrate: bool,
    timings: dict,
    attempts: list,
    min_registered: float,
) -> tuple[PoseResult | None, dict]:
    """Write and verify a database, then run the mappers in turn; the best model and database stats."""
    import pycolmap

    db_path = tmp / "database.db"
    suffix = "" if calibrate == cfg.calibrate_view_graph else "_uncalibrated"
    t0 = time.perf_counter()
    db_stats = write_database(db_path, corr, w, h, cfg)
    timings[f"database{suffix}_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _verify(db_path, cfg, calibrate)
    timings[f"verification{suffix}_s"] = time.perf_counter() - t0
    with pycolmap.Database.open(str(db_path)) as db:
        db_stats["verified_pairs"] = int(db.num_verified_image_pairs())
    if db_stats["verified_pairs"] == 0:
        return None, db_stats
    mappers = [(cfg.mapper, True)] + (
        [(m, True) for m in ("global", "incremental") if m != cfg.mapper] if cfg.fallback else []
    )
    if cfg.fallback and not cfg.mapper_options.get("skip_retriangulation"):
        # The global mapper's last step re-triangulates every point from the database; on low-parallax
        # clips (a slow forward dolly) it can drop all of them and discard a good model. Keep it then.
        mappers.insert(mappers.index(("global", True)) + 1, ("global", False))
    best = None
    for mapper, retriangulate in mappers:
        name = mapper if retriangulate else f"{mapper}_no_retriangulation"
        out = tmp / name
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
        timings[f"{name}_mapping{suffix}_s"] = time.perf_counter() - t0
        attempt = {"mapper": name, "calibrated_focal": calibrate, "registered_ratio": 0.0, "models": len(recs)}
        if recs:
            rec = max(recs.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))
            result = _to_result(rec, timestamps, w, h, name)
            attempt.update(registered_ratio=result.registered_ratio, focal_ratio=result.intrinsics.fx / max(w, h))
            if best is None or result.registered_ratio > best.registered_ratio:
                best = result
        attempts.append(attempt)
        if best is not None and best.registered_ratio >= min_registered:
            break
    return best, db_stats


def _run_sfm(tracklets, masks, timestamps, cfg: SfmConfig, work_dir, min_registered: float) -> PoseResult:
    w, h = tracklets.width, tracklets.height
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    corr = build_correspondences(tracklets, masks, cfg)
    timings["correspondences_s"] = time.perf_counter() - t0
    if corr.num_tracks < 20:
        return failed_result(timestamps, w, h, "too few static tracks", cfg, stats=corr.stats, timings=timings)
    best, attempts, stats = None, [], dict(corr.stats)
    # The view-graph focal calibration helps most clips, but a wrong focal from it can leave both
    # mappers with nothing to triangulate (a low-parallax dolly): then map again without it.
    for calibrate in dict.fromkeys([cfg.calibrate_view_graph, False]):
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            result, verified = _map_database(
                Path(tmp), corr, timestamps, w, h, cfg, calibrate, timings, attempts, min_registered
            )
        stats.update(verified)
        if result is not None and (best is None or result.registered_ratio > best.registered_ratio):
            best = result
        if best is not None and best.registered_ratio >= min_registered:
            break
        if verified["verified_pairs"] == 0:
            return failed_result(timestamps, w, h, "no verified image pair", cfg, stats=stats, timings=timings)
    if best is None:
        return failed_result(
            timestamps, w, h, "mapper produced no model", cfg, stats=stats, timings=timings, attempts=attempts
        )
    best.extra.update(stats=stats, timings=timings, attempts=attempts)
    return best
