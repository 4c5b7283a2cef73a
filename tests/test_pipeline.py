"""annotate_frames / annotate_video: statuses for bad input, output files, quality tiers."""

from __future__ import annotations

import json
import math
import pickle
import time

import av
import cv2
import numpy as np
import pytest

from dynpose.domain.annotate.pipeline import AnnotateConfig, annotate_frames, annotate_video
from dynpose.domain.annotate.quality import assess, reprojection_tier
from dynpose.domain.camera import Intrinsics, PoseResult, read_cameras_pkl, read_tum
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory

FAST = AnnotateConfig(masks=None)  # bad-input checks do not need masks


def sampled(frames: np.ndarray) -> SampledFrames:
    n = len(frames)
    return SampledFrames(frames, np.arange(n) / 12.0, np.arange(n), 12.0)


def noise_texture(rng, size: int = 256) -> np.ndarray:
    img = sum(
        cv2.resize(rng.random((s, s, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC) / math.sqrt(s)
        for s in (4, 8, 16, 32, 64)
    )
    return ((img - img.min()) / (img.max() - img.min()) * 230 + 10).astype(np.float32)


def render_room(n: int = 40, w: int = 320, h: int = 180, f: float = 260.0, seed: int = 0):
    """Ray-cast a textured box room along a smooth camera path; returns frames (RGB) and w2c poses."""
    rng = np.random.default_rng(seed)
    planes = [((0, 1.5, 0), 1), ((0, -2, 0), 1), ((-4, 0, 0), 0), ((4, 0, 0), 0), ((0, 0, 12), 2), ((0, 0, -6), 2)]
    texs = [noise_texture(rng) for _ in planes]
    ss = 2  # 2x supersampling against aliasing
    u, v = np.meshgrid((np.arange(w * ss) + 0.5) / ss - 0.5, (np.arange(h * ss) + 0.5) / ss - 0.5)
    rays = np.stack([(u - (w - 1) / 2) / f, (v - (h - 1) / 2) / f, np.ones_like(u)], -1).reshape(-1, 3)
    frames, poses = [], []
    for s in np.linspace(0, 1, n):
        c = np.array([1.5 * np.sin(1.3 * s), -0.2 + 0.2 * np.sin(3 * s), -2.5 + 2.0 * s])
        z = np.array([0.6 * np.sin(2 * s), 0.0, 10.0]) - c
        z /= np.linalg.norm(z)
        x = np.cross([0.0, -1.0, 0.0], z)
        x /= np.linalg.norm(x)
        r = np.stack([x, np.cross(z, x), z])
        d = rays @ r
        best = np.full(len(d), np.inf)
        img = np.zeros((len(d), 3), np.float32)
        for (p0, axis), tex in zip(planes, texs):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (p0[axis] - c[axis]) / d[:, axis]
            hit = (t > 0) & (t < best)
            pts = c + d[hit] * t[hit, None]
            uv = np.delete(pts, axis, axis=1) * 40.0  # 40 texels per metre, wrapped
            img[hit] = _sample(tex, uv)
            best[hit] = t[hit]
        frame = cv2.resize(img.reshape(h * ss, w * ss, 3), (w, h), interpolation=cv2.INTER_AREA)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        poses.append(np.hstack([r, (-r @ c)[:, None]]))
    return np.stack(frames), np.stack(poses), f


def _sample(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear wrapped texture lookup (cv2.remap cannot take maps this long)."""
    n = tex.shape[0]
    x0, y0 = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    fx, fy = (uv[:, 0] - x0)[:, None], (uv[:, 1] - y0)[:, None]
    at = lambda yy, xx: tex[yy % n, xx % n]  # noqa: E731
    return (
        at(y0, x0) * (1 - fx) * (1 - fy)
        + at(y0, x0 + 1) * fx * (1 - fy)
        + at(y0 + 1, x0) * (1 - fx) * fy
        + at(y0 + 1, x0 + 1) * fx * fy
    )


def write_video(path, frames: np.ndarray, fps: int = 24) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def room():
    return render_room()


# -- quality tiers -----------------------------------------------------------------------------


def test_reprojection_tiers_follow_table6():
    assert [reprojection_tier(e) for e in (0.5, 0.999, 1.0, 1.17, 1.18, 1.369, 1.37, 3.0)] == [
        "tier1",
        "tier1",
        "tier2",
        "tier2",
        "tier3",
        "tier3",
        "tier4",
        "tier4",
    ]
    assert reprojection_tier(float("nan")) == "failed"
    k = Intrinsics(100, 100, 50, 40, 100, 80)
    poses = np.zeros((10, 3, 4))
    good = PoseResult(np.arange(10.0), poses, np.arange(10) < 8, k, reprojection_error=0.9)
    bad = PoseResult(np.arange(10.0), poses, np.arange(10) < 7, k, reprojection_error=0.9)
    assert assess(good).tier == "tier1" and assess(good).registered
    assert assess(bad).tier == "failed" and not assess(bad).registered
    # A registered trajectory with a focal 20x the image width has unusable intrinsics: not tiered.
    tele = PoseResult(
        np.arange(10.0), poses, np.ones(10, bool), Intrinsics(2000, 2000, 50, 40, 100, 80), reprojection_error=0.5
    )
    assert assess(tele).registered and not assess(tele).focal_plausible and assess(tele).tier == "failed"
    assert assess(good).focal_plausible


# -- bad input gives a status, quickly ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, frames, status",
    [
        ("black", np.zeros((30, 120, 160, 3), np.uint8), "no_texture"),
        ("gray", np.full((30, 120, 160, 3), 128, np.uint8), "no_texture"),
        ("single", np.random.default_rng(0).integers(0, 255, (1, 120, 160, 3), dtype=np.uint8), "too_few_frames"),
        ("empty", np.zeros((0, 120, 160, 3), np.uint8), "too_few_frames"),
    ],
)
def test_bad_input_status(name, frames, status):
    t0 = time.perf_counter()
    ann = annotate_frames(sampled(frames), AnnotateConfig())  # default config, masks included
    assert ann.status == status, (name, ann.message)
    assert not ann.poses.registered.any() and ann.quality.tier == "failed"
    assert len(ann.poses.registered) == len(frames)
    assert time.perf_counter() - t0 < 5.0


def test_static_camera(room):
    frames = np.repeat(room[0][:1], 24, axis=0).astype(np.int16)
    frames += np.random.default_rng(0).integers(-2, 3, frames.shape).astype(np.int16)  # sensor noise
    ann = annotate_frames(sampled(np.clip(frames, 0, 255).astype(np.uint8)), FAST)
    assert ann.status == "static_camera", ann.message
    assert ann.tracklets is not None and ann.quality.tier == "failed"


def test_given_masks_are_used_and_checked(room):
    frames = room[0][:12]
    with pytest.raises(ValueError, match="masks"):
        annotate_frames(sampled(frames), FAST, masks=np.zeros((12, 10, 10), bool))
    masks = np.zeros(frames.shape[:3], bool)
    masks[:, :, :160] = True  # the left half is "dynamic"
    ann = annotate_frames(sampled(frames), FAST, masks=masks)
    assert ann.masks is masks or np.array_equal(ann.masks, masks)
    assert ann.poses.extra["stats"]["masked"] > 0


# -- a real (synthetic) video end to end ----------------------------------------------------------


def test_annotate_video_writes_documented_files(tmp_path, room):
    frames, poses, f = room
    video = tmp_path / "room.mp4"
    write_video(video, frames, fps=24)  # 40 frames at 24 fps -> 20 frames at 12 fps
    out = tmp_path / "out"
    ann = annotate_video(video, out, AnnotateConfig(masks=None))
    assert ann.status == "ok", ann.message
    assert {p.name for p in out.iterdir()} == {"trajectory.tum", "cameras.pkl", "annotation.json"}

    doc = json.loads((out / "annotation.json").read_text())
    assert doc["status"] == "ok" and doc["tier"] in ("tier1", "tier2", "tier3", "tier4")
    assert doc["n_frames"] == len(ann.timestamps) == 20 and (doc["width"], doc["height"]) == (320, 180)
    assert doc["registered_ratio"] >= 0.8 and doc["reprojection_error"] < 1.37
    assert set(doc["intrinsics"]) == {"fx", "fy", "cx", "cy", "width", "height"}
    assert abs(doc["intrinsics"]["fx"] - f) < 0.1 * f
    assert {"decode_s", "tracking_s", "sfm_s", "total_s"} <= set(doc["timings"])

    times, tum_poses = read_tum(out / "trajectory.tum")
    reg = ann.poses.registered
    assert len(times) == reg.sum() and np.allclose(times, ann.timestamps[reg], atol=1e-6)
    assert np.allclose(tum_poses, ann.poses.poses_w2c[reg], atol=1e-6)
    cams = read_cameras_pkl(out / "cameras.pkl")
    assert np.array_equal(cams.registered, reg) and cams.intrinsics.width == 320
    with open(out / "cameras.pkl", "rb") as fh:
        assert set(pickle.load(fh)) == {"poses", "intrinsics", "width", "height", "timestamps", "registered"}

    src = ann.source_indices  # ground truth at the sampled source frames
    gt = PoseResult(ann.timestamps, poses[src], np.ones(len(src), bool), Intrinsics(f, f, 159.5, 89.5, 320, 180))
    ev = evaluate_trajectory(ann.poses, gt)
    assert ev["success"] and ev["ate"] < 0.05, ev  # camera path spans about 2.5 m


def test_unreadable_video_still_writes_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    ann = annotate_video(bad, tmp_path / "out", FAST)
    assert ann.status == "unreadable"
    doc = json.loads((tmp_path / "out" / "annotation.json").read_text())
    assert doc["status"] == "unreadable" and doc["tier"] == "failed" and doc["registered_frames"] == 0
    assert doc["intrinsics"] is None  # no image decoded, so no intrinsics to report
    assert (tmp_path / "out" / "trajectory.tum").read_text() == ""
