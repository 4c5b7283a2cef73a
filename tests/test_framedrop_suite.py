"""Frame-drop clips: consecutive written frames, scene time jumping by 3-15 nominal frames at gaps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from dynpose.domain.camera import read_cameras_pkl, read_tum
from dynpose.domain.synth import ClipSpec, render_clip, suite_specs, write_clip
from dynpose.domain.synth.suites import DENSE

# Tiny and short; drops every 2-4 written frames so that a 1.5 s clip has several of them.
BASE = ClipSpec(
    seed=21,
    layout="room",
    trajectory="orbit",
    width=160,
    height=120,
    fps=8.0,
    seconds=1.5,
    n_objects=1,
    corr_per_pair=16,
    frame_drops=(3, 15),
    drop_spacing=(2, 4),
)


@pytest.fixture(scope="module")
def clip():
    return render_clip(BASE)


def _gaps(clip):
    return {k: g for k, g in clip.meta["frame_drops"]}


def test_written_frames_keep_the_nominal_length(clip):
    n = round(BASE.seconds * BASE.fps)
    assert len(clip) == n == clip.meta["n_frames"] and clip.depth.shape[0] == n and len(clip.poses_w2c) == n
    # Ground truth is on the video's clock, frame k at k / fps.
    np.testing.assert_array_equal(clip.timestamps, np.arange(n) / BASE.fps)
    assert clip.meta["seconds"] == n / BASE.fps


def test_gaps_and_scene_times(clip):
    gaps = _gaps(clip)
    assert len(gaps) >= 2 and all(3 <= g <= 15 for g in gaps.values())
    positions = sorted(gaps)
    assert all(2 <= b - a <= 4 for a, b in zip(positions, positions[1:]))  # drop_spacing
    st = np.array(clip.meta["scene_times"])
    assert st[0] == 0 and len(st) == len(clip)
    expect = np.array([gaps.get(k, 1) for k in range(len(st) - 1)]) / BASE.fps
    np.testing.assert_allclose(np.diff(st), expect, atol=1e-9)
    assert clip.meta["scene_seconds"] == pytest.approx(st[-1] + 1 / BASE.fps)


def test_poses_are_at_scene_times_and_jump_across_gaps(clip):
    path = clip.world["camera_path"]
    st = clip.meta["scene_times"]
    for k in range(len(clip)):
        np.testing.assert_allclose(clip.poses_w2c[k], path.w2c(st[k]), atol=1e-12)
    centres = np.array([-p[:, :3].T @ p[:, 3] for p in clip.poses_w2c])
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    gaps = _gaps(clip)
    across = step[list(gaps)]
    normal = np.delete(step, list(gaps))
    # An orbit moves at a steady speed: a jump of >= 3 nominal frames moves well over one step.
    assert across.min() > 2 * normal.max() > 0


def test_correspondences_use_scene_baselines_and_video_times(clip):
    c = clip.correspondences
    assert len(c["frame_i"]) > 0
    np.testing.assert_array_equal(c["t_i"], c["frame_i"] / BASE.fps)
    np.testing.assert_array_equal(c["t_j"], c["frame_j"] / BASE.fps)
    st = np.array(clip.meta["scene_times"])
    assert (st[c["frame_j"]] - st[c["frame_i"]] <= BASE.corr_max_dt + 1e-9).all()


def test_written_clip_is_on_the_video_clock(clip, tmp_path):
    write_clip(clip, tmp_path, "drops")
    n = len(clip)
    meta = json.loads((tmp_path / "drops" / "meta.json").read_text())
    assert meta["frame_drops"] == clip.meta["frame_drops"] and len(meta["scene_times"]) == n
    assert meta["spec"]["frame_drops"] == [3, 15]
    cams = read_cameras_pkl(tmp_path / "drops" / "cameras.pkl")
    np.testing.assert_allclose(cams.timestamps, np.arange(n) / BASE.fps)
    ts, _ = read_tum(tmp_path / "drops" / "trajectory.tum")
    np.testing.assert_allclose(ts, np.arange(n) / BASE.fps, atol=1e-6)


def test_without_drops_nothing_changes():
    plain = replace(BASE, frame_drops=None)
    a = render_clip(plain)
    st = np.arange(len(a)) / BASE.fps
    np.testing.assert_array_equal(a.timestamps, st)
    assert "scene_times" not in a.meta and "frame_drops" not in a.meta
    path = a.world["camera_path"]
    np.testing.assert_allclose(a.poses_w2c[-1], path.w2c(st[-1]), atol=1e-12)
    # Drops on but spaced past the clip's end: none is drawn, and the clip is the plain one
    # (the drop draws have their own random stream).
    b = render_clip(replace(BASE, drop_spacing=(100, 100)))
    assert b.meta["frame_drops"] == []
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.poses_w2c, b.poses_w2c)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_bad_drop_settings_fail_loudly():
    with pytest.raises(ValueError):
        render_clip(replace(BASE, frame_drops=(0, 3)))


def test_framedrop_suite_definition():
    specs = suite_specs("framedrop")
    assert len(specs) == 9 and DENSE["framedrop"]
    assert {s.layout for _, s in specs} == {"room", "street", "plaza"}
    assert {"handheld_walk", "orbit", "pan_translate", "forward"} <= {s.trajectory for _, s in specs}
    assert all((s.width, s.height, s.fps, s.seconds, s.frame_drops) == (854, 480, 12.0, 5.0, (3, 15)) for _, s in specs)
    bench_seeds = {s.seed for _, s in suite_specs("bench")}
    assert not bench_seeds & {s.seed for _, s in specs}
    assert len({n for n, _ in specs}) == len(specs)
    assert suite_specs("framedrop") == specs  # deterministic


def test_cli_accepts_the_framedrop_suite():
    from dynpose import cli

    args = cli.build_parser().parse_args(["synth", "out", "--suite", "framedrop"])
    assert args.suite == "framedrop"
