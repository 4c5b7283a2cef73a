"""One pixel convention (pixel centres at integers) for every builder of a PoseResult and every COLMAP conversion."""

from __future__ import annotations

import numpy as np
import pytest

from dynpose.domain.annotate import sfm
from dynpose.domain.camera import Intrinsics, PoseResult, image_centre
from dynpose.domain.colmap_io import intrinsics_from_colmap, pose_result_from_reconstruction, to_colmap_xy
from dynpose.domain.video import SampledFrames
from dynpose.evaluation import baselines
from dynpose.evaluation.baselines import colmap
from dynpose.graph.steps.eval import empty_result

W, H = 320, 240


def test_unregistered_result():
    ts = np.arange(5) / 12.0
    res = PoseResult.unregistered(ts, W, H, "why", method="x")
    k = res.intrinsics
    assert (k.cx, k.cy) == ((W - 1) / 2, (H - 1) / 2) == image_centre(W, H)
    assert k.fx == k.fy == pytest.approx(1.2 * W) and (k.width, k.height) == (W, H)
    assert not res.registered.any() and res.registered.shape == (5,)
    assert np.array_equal(res.poses_w2c, np.tile(np.eye(3, 4), (5, 1, 1)))
    assert res.extra == {"reason": "why", "method": "x"}
    assert PoseResult.unregistered(ts, W, H, "why", focal=100.0).intrinsics.fx == 100.0


def test_every_unregistered_builder_has_the_same_principal_point():
    ts = np.arange(4) / 12.0
    sampled = SampledFrames(np.zeros((4, H, W, 3), np.uint8), ts, np.arange(4), 12.0)
    built = [
        sfm.failed_result(ts, W, H, "r"),
        sfm.failed_result(ts, W, H, "r", sfm.SfmConfig(focal_guess=0.9)),
        baselines.failed_result(sampled, "r"),
        PoseResult.unregistered(ts, W, H, "r"),
    ]
    for res in built:
        assert (res.intrinsics.cx, res.intrinsics.cy) == image_centre(W, H)
        assert not res.registered.any() and res.extra["reason"] == "r"
    assert built[1].intrinsics.fx == pytest.approx(0.9 * W)  # ours keeps cfg.focal_guess
    assert built[0].intrinsics == built[2].intrinsics == built[3].intrinsics  # same 1.2 prior by default
    empty = empty_result()
    assert len(empty.timestamps) == 0 and (empty.intrinsics.cx, empty.intrinsics.cy) == image_centre(1, 1)


def test_synthetic_ground_truth_uses_integer_pixel_centres():
    from dynpose.domain.synth.render import CameraModel as Cam

    cam = Cam(300.0, 300.0, (W - 1) / 2, (H - 1) / 2, W, H)
    dx, dy, _, _ = cam.rays()
    # The ray through the image centre, between the two middle pixels, is the optical axis.
    assert dx[0, W // 2 - 1] == pytest.approx(-dx[0, W // 2]) and dy[H // 2 - 1, 0] == pytest.approx(-dy[H // 2, 0])


def test_colmap_intrinsics_subtract_half_a_pixel():
    k = intrinsics_from_colmap("SIMPLE_RADIAL", [400.0, W / 2, H / 2, 0.01], W, H)
    assert (k.fx, k.fy, k.cx, k.cy) == (400.0, 400.0, (W - 1) / 2, (H - 1) / 2)
    k = intrinsics_from_colmap("PINHOLE", [400.0, 410.0, 161.0, 121.0], W, H)
    assert (k.fx, k.fy, k.cx, k.cy) == (400.0, 410.0, 160.5, 120.5)
    assert np.array_equal(to_colmap_xy(np.array(image_centre(W, H))), [W / 2, H / 2])


def _reconstruction(names_posed: dict[str, bool]):
    pycolmap = pytest.importorskip("pycolmap")
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera(model="SIMPLE_RADIAL", width=W, height=H, params=[400.0, 161.0, 122.0, 0.02])
    cam.camera_id = 1
    rec.add_camera_with_trivial_rig(cam)
    for image_id, (name, posed) in enumerate(names_posed.items(), start=1):
        image = pycolmap.Image(name=name, camera_id=1, image_id=image_id)
        if posed:
            rec.add_image_with_trivial_frame(
                image, pycolmap.Rigid3d(pycolmap.Rotation3d(), np.array([0.1 * image_id, 0.0, 0.0]))
            )
        else:
            rec.add_image_with_trivial_frame(image)
    return rec


def test_shared_conversion_subtracts_half_a_pixel():
    rec = _reconstruction({"000000.png": True, "000001.png": False, "000002.png": True})
    ts = np.arange(4) / 12.0
    res = pose_result_from_reconstruction(
        rec, ts, W, H, {"000000.png": 0, "000001.png": 1, "000002.png": 2}, extra={"x": 1}
    )
    assert (res.intrinsics.fx, res.intrinsics.cx, res.intrinsics.cy) == (400.0, 160.5, 121.5)
    assert res.registered.tolist() == [True, False, True, False]
    assert res.poses_w2c[2, 0, 3] == pytest.approx(0.3) and np.array_equal(res.poses_w2c[1], np.eye(3, 4))
    assert res.extra["camera_params"] == [400.0, 161.0, 122.0, 0.02]  # COLMAP's own, unconverted
    assert res.extra["radial_k1"] == 0.02 and res.extra["camera_model"] == "SIMPLE_RADIAL" and res.extra["x"] == 1


def test_ours_and_the_colmap_baseline_convert_alike():
    rec = _reconstruction({"000000.png": True, "000001.png": True})
    ts = np.arange(2) / 12.0
    sampled = SampledFrames(np.zeros((2, H, W, 3), np.uint8), ts, np.arange(2), 12.0)
    ours = sfm._to_result(rec, ts, W, H, "global")
    base = colmap.to_pose_result(rec, sampled, ["000000.png", "000001.png"])
    assert ours.intrinsics == base.intrinsics and (base.intrinsics.cx, base.intrinsics.cy) == (160.5, 121.5)
    assert np.array_equal(ours.poses_w2c, base.poses_w2c) and np.array_equal(ours.registered, base.registered)
    assert ours.extra["mapper"] == "global" and base.extra["points3d"].shape == (0, 3)


@pytest.mark.parametrize("size", [(160, 120), (640, 480), (854, 480), (333, 217)])
def test_scaled_keeps_the_image_centre_and_inverts(size):
    k = Intrinsics(300.0, 310.0, *image_centre(W, H), W, H)
    s = k.scaled(*size)
    assert (s.cx, s.cy) == pytest.approx(image_centre(*size))
    assert s.fx == pytest.approx(300.0 * size[0] / W)
    odd = Intrinsics(300.0, 310.0, 150.25, 101.75, W, H)
    back = odd.scaled(*size).scaled(W, H)
    assert (back.fx, back.fy, back.cx, back.cy) == pytest.approx((odd.fx, odd.fy, odd.cx, odd.cy))


def test_scaled_maps_pixels_as_a_resize_does():
    # A point at pixel centre x in a W-wide image sits at (x + 0.5) * s - 0.5 after resizing by s:
    # the scaled camera projects a 3-D point where the resized image shows it.
    k = Intrinsics(300.0, 300.0, 150.0, 110.0, W, H)
    s = k.scaled(W // 2, H // 2)
    point = np.array([0.3, -0.2, 2.0])
    u, v = (k.matrix() @ point)[:2] / point[2]
    u2, v2 = (s.matrix() @ point)[:2] / point[2]
    assert (u2, v2) == pytest.approx(((u + 0.5) / 2 - 0.5, (v + 0.5) / 2 - 0.5))
