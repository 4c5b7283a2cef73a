"""TracksTo4D inference: a checkpoint, a video's tracks -> camera poses, motion levels, and the
paper's optional bundle adjustment of the static cloud B1 (through pycolmap) as refinement."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from dynpose.domain.camera import Intrinsics, PoseResult, image_centre
from dynpose.domain.colmap_io import colmap_log_level, pose_result_from_reconstruction, to_colmap_xy
from dynpose.domain.tracksto4d.data import TrackTensor
from dynpose.domain.tracksto4d.model import NetConfig, Outputs, TracksTo4D, reprojection, to_camera

log = logging.getLogger(__name__)

# Trained here on the bench suite's tuning clips (weights/README.md says how).
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "tracksto4d_bench.pt"


@dataclass
class InferConfig:
    max_points: int = 600  # tracks fed to the network (the longest first); the paper: all, a 15x15 grid per 20 frames
    min_visible: int = 5  # frames with fewer visible tracks are reported unregistered
    ba: bool = False  # bundle-adjust B1 and the poses afterwards (the paper's "+BA")
    ba_gamma_max: float = 0.008  # normalised units: B1 points used by BA (the paper: 0.008 pets, 0.005 other)
    ba_min_points: float = 0.3  # ... and at least this share of the tracks, the lowest gamma first
    # The BA's outlier handling, chosen on the training clips 000-013 (docs/tracksto4d.md): observations
    # whose initial reprojection error is larger are left out, the rest under a robust loss
    ba_max_error: float = 20.0  # pixels
    ba_loss: str = "cauchy"  # Ceres loss: trivial | cauchy | soft_l1 | huber
    ba_loss_scale: float = 2.0  # pixels
    ba_refine_focal: bool = True  # the focal is a guess here (the paper knows it)
    extra: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: TracksTo4D, meta: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.describe()["config"], "state_dict": model.state_dict(), "meta": meta}, tmp)
    tmp.replace(path)


@lru_cache(maxsize=4)
def load_checkpoint(path: str) -> tuple[TracksTo4D, dict]:
    """(model in eval mode, the checkpoint's meta); raises FileNotFoundError naming the path."""
    if not Path(path).exists():
        raise FileNotFoundError(f"TracksTo4D checkpoint {path} not found: train one with `dynpose train tracksto4d`")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = TracksTo4D(NetConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), state.get("meta", {})


def choose_tracks(tracks: TrackTensor, max_points: int) -> np.ndarray:
    """Indices of the ``max_points`` longest tracks (all if fewer), in track order."""
    length = tracks.visible.sum(0)
    if tracks.num_tracks <= max_points:
        return np.arange(tracks.num_tracks)
    return np.sort(np.argsort(-length, kind="stable")[:max_points])


def predict(model: TracksTo4D, tracks: TrackTensor, chosen: np.ndarray) -> Outputs:
    with torch.inference_mode():
        return model(torch.from_numpy(tracks.normalised(tracks=chosen)))


def _w2c(out: Outputs) -> np.ndarray:
    r = out.rotation[0].double().numpy()  # camera-to-world
    c = out.centre[0].double().numpy()
    rt = np.transpose(r, (0, 2, 1))
    return np.concatenate([rt, -np.einsum("nij,nj->ni", rt, c)[..., None]], axis=2)


def run(model: TracksTo4D, tracks: TrackTensor, timestamps: np.ndarray, cfg: InferConfig | None = None) -> PoseResult:
    """Poses of every frame (frames seeing fewer than ``min_visible`` chosen tracks unregistered);
    ``extra``: per-track ``gamma`` and ``track_index`` (into ``tracks``), seconds, BA statistics."""
    cfg = cfg or InferConfig()
    chosen = choose_tracks(tracks, cfg.max_points)
    t0 = time.perf_counter()
    out = predict(model, tracks, chosen)
    network_s = time.perf_counter() - t0
    cx, cy = image_centre(tracks.width, tracks.height)
    k = Intrinsics(tracks.focal, tracks.focal, cx, cy, tracks.width, tracks.height)
    gamma = out.gamma[0].double().numpy()
    registered = tracks.visible[:, chosen].sum(1) >= cfg.min_visible
    cam = to_camera(out.bases[:, :, 0], out.rotation, out.centre)
    r_static = reprojection(cam, torch.from_numpy(tracks.normalised(tracks=chosen)[..., :2]))[0].numpy()
    vis = tracks.visible[:, chosen]
    extra = {
        "method": "tracksto4d",
        "gamma": gamma,
        "track_index": chosen,
        "network_s": network_s,
        "points": len(chosen),
        **cfg.extra,
    }
    result = PoseResult(
        timestamps=np.asarray(timestamps, np.float64),
        poses_w2c=_w2c(out),
        registered=registered,
        intrinsics=k,
        reprojection_error=float((r_static * vis).sum() / max(vis.sum(), 1) * tracks.focal),
        num_points=len(chosen),
        extra=extra,
    )
    if cfg.ba:
        t0 = time.perf_counter()
        result = bundle_adjust(result, out, tracks, chosen, cfg)
        result.extra["ba_s"] = time.perf_counter() - t0
    return result


def bundle_adjust(result: PoseResult, out: Outputs, tracks: TrackTensor, chosen: np.ndarray, cfg: InferConfig):
    """The network's low-gamma B1 points and poses as a COLMAP model, bundle-adjusted (appendix B.3)."""
    import pycolmap

    gamma = result.extra["gamma"]
    quota = int(np.ceil(cfg.ba_min_points * len(chosen)))
    static = (gamma <= cfg.ba_gamma_max) | (np.argsort(np.argsort(gamma, kind="stable")) < quota)
    b1 = out.bases[0, :, 0].double().numpy()
    k = result.intrinsics
    rec = pycolmap.Reconstruction()
    pp = to_colmap_xy(np.array([k.cx, k.cy]))
    camera = pycolmap.Camera(model="SIMPLE_PINHOLE", width=k.width, height=k.height, params=[k.fx, *pp], camera_id=1)
    rec.add_camera_with_trivial_rig(camera)
    # initial reprojection error of each observation, pixels
    xy = tracks.xy[:, chosen]
    cam = np.einsum("nij,pj->npi", result.poses_w2c[:, :, :3], b1) + result.poses_w2c[:, None, :, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = cam[..., :2] / cam[..., 2:3] * k.fx + np.array([k.cx, k.cy])
    err = np.linalg.norm(proj - xy, axis=-1)
    use = tracks.visible[:, chosen] & static[None] & (cam[..., 2] > 0) & (err < cfg.ba_max_error)
    use &= (use.sum(0) >= 2)[None]  # a point needs two views
    point_ids = {}
    for i in range(len(xy)):
        cols = np.flatnonzero(use[i])
        image = pycolmap.Image(
            name=f"{i:06d}", keypoints=to_colmap_xy(xy[i, cols].astype(np.float64)), camera_id=1, image_id=i + 1
        )
        if not len(cols) or not result.registered[i]:
            continue
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(result.poses_w2c[i]))
        for kp, j in enumerate(cols):
            if j not in point_ids:
                point_ids[j] = rec.add_point3D(b1[j], pycolmap.Track())
            rec.add_observation(point_ids[j], pycolmap.TrackElement(i + 1, kp))
    stats = {"ba_points": len(point_ids), "ba_observations": int(use.sum())}
    if len(rec.images) < 2 or not point_ids:
        result.extra.update(stats, ba_error="too few static points for bundle adjustment")
        return result
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = cfg.ba_refine_focal
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.print_summary = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.__members__[cfg.ba_loss.upper()]
    options.ceres.loss_function_scale = cfg.ba_loss_scale
    try:
        with colmap_log_level(2):  # Ceres warns about every step it rejects
            pycolmap.bundle_adjustment(rec, options)
    except Exception as exc:  # keep the network's poses if BA fails
        log.warning("TracksTo4D bundle adjustment failed: %s", exc)
        result.extra.update(stats, ba_error=str(exc))
        return result
    # A robust loss lets the points it gave up on drift anywhere (behind a camera, far away): drop
    # them as COLMAP's mappers do after BA, and keep the network's poses if BA made the rest worse.
    stats["ba_filtered"] = pycolmap.ObservationManager(rec).filter_all_points3D(cfg.ba_max_error, 0.0)
    refined = pose_result_from_reconstruction(
        rec, result.timestamps, k.width, k.height, lambda name: int(name), extra={**result.extra, **stats}
    )
    before = float(err[use].mean())
    if not refined.reprojection_error <= before:  # also NaN: nothing left
        result.extra.update(
            stats, ba_error=f"no better after bundle adjustment ({before:.2f} -> {refined.reprojection_error:.2f} px)"
        )
        return result
    refined.extra["method"] = "tracksto4d+ba"
    return refined
