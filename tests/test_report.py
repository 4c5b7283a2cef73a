"""Benchmark report and dataset statistics on hand-built rows with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dynpose.domain.camera import Intrinsics, PoseResult
from dynpose.domain.poses import pose_row
from dynpose.evaluation.report import COLUMNS, NO_FILTERS, build_benchmark_report
from dynpose.evaluation.statistics import dataset_statistics

PNG = b"\x89PNG\r\n\x1a\n"
VIDEOS = [f"v{i}" for i in range(5)]
ATE = {"ours": [0.1, 0.2, 0.3, 0.4, 0.5], "colmap": [0.2, 0.4, 0.6, 0.8, 2.0], "identity": [1.0] * 5}
REPROJ = {"ours": [1, 4, 6, 12, 2], "colmap": [3, 8, 20, 35, 150], "identity": [50, 60, 70, 80, math.nan]}
SECONDS = {"ours": [2.0] * 5, "colmap": [1, 2, 3, 4, 5], "identity": [0.01] * 5}
TRAJ = ["pan", "pan", "orbit", "orbit", None]


def pose_rows() -> list[dict]:
    rows = []
    for m, ates in ATE.items():
        for i, (v, ate) in enumerate(zip(VIDEOS, ates)):
            fail = m == "colmap" and v == "v4"  # the one failure, already filled by the metrics
            rows.append(
                {
                    "video_id": v,
                    "method": m,
                    "ate": ate,
                    "rpe_t": ate / 10,
                    "rpe_r": ate * 10,
                    "registered_ratio": 0.3 if fail else 1.0,
                    "success": not fail,
                    "filled": "failure" if fail else "none",
                    "n_frames": 12,
                    "seconds": SECONDS[m][i],
                    "peak_mib": 100.0 * (i + 1) if m == "ours" else 50.0,
                    "category": "street",
                    "trajectory": TRAJ[i],
                }
            )
    return rows


def reprojection_rows() -> list[dict]:
    return [
        {"video_id": v, "method": m, "reprojection_px": float(e)}
        for m, errs in REPROJ.items()
        for v, e in zip(VIDEOS, errs)
    ]


MASKS = [
    {
        "video_id": "v0",
        "iou_union": 0.5,
        "iou_semantic": 0.4,
        "iou_motion": math.nan,
        "gt_coverage": 0.2,
        "pred_coverage": 0.3,
    },
    {
        "video_id": "v1",
        "iou_union": 0.7,
        "iou_semantic": 0.6,
        "iou_motion": 0.9,
        "gt_coverage": 0.2,
        "pred_coverage": 0.1,
    },
    {
        "video_id": "v2",
        "iou_union": math.nan,
        "iou_semantic": 0.8,
        "iou_motion": math.nan,
        "gt_coverage": 0.0,
        "pred_coverage": 0.0,
    },
]
FILTERS = [
    {
        "name": "flow",
        "average_precision": 0.75,
        "precision_at_recall_40": 0.8,
        "recall": [0.25, 0.5, 1.0],
        "precision": [1.0, 0.67, 0.5],
        "n_videos": 8,
        "n_positive": 4,
    },
    {
        "name": "vlm",
        "average_precision": 0.6,
        "precision_at_recall_40": 0.5,
        "recall": [0.5, 1.0],
        "precision": [0.5, 0.5],
        "n_videos": 8,
        "n_positive": 4,
    },
]


def circle_path(n=12, radius=1.0) -> PoseResult:
    """Cameras on a circle in the x-z plane, all looking along +z."""
    ang = np.linspace(0, np.pi, n)
    centres = np.stack([radius * np.cos(ang), 0.1 * ang, radius * np.sin(ang)], 1)
    poses = np.zeros((n, 3, 4))
    poses[:, :, :3] = np.eye(3)
    poses[:, :, 3] = -centres
    return PoseResult(np.arange(n) / 12.0, poses, np.ones(n, bool), Intrinsics(100, 100, 64, 48, 128, 96))


def by_method(table):
    return {r["method"]: r for r in table}


@pytest.fixture(scope="module")
def report():
    gt = circle_path()
    noisy = PoseResult(
        gt.timestamps,
        gt.poses_w2c + np.random.default_rng(0).normal(0, 0.02, gt.poses_w2c.shape),
        gt.registered,
        gt.intrinsics,
    )
    examples = [{"video_id": "v0", "gt": gt, "preds": {"ours": noisy}}]
    return build_benchmark_report(pose_rows(), reprojection_rows(), MASKS, FILTERS, examples, machine="test box")


def test_table_over_all_videos(report):
    assert [list(r) for r in report.table] == [COLUMNS] * 3
    t = by_method(report.table)
    assert list(t) == ["ours", "colmap", "identity"]
    assert t["colmap"]["% registered"] == pytest.approx(80.0) and t["ours"]["% registered"] == 100.0
    assert t["ours"]["ATE"] == pytest.approx(0.3) and t["colmap"]["ATE"] == pytest.approx(0.8)  # failure's fill counts
    assert t["colmap"]["RPE-t"] == pytest.approx(0.08) and t["colmap"]["RPE-r"] == pytest.approx(8.0)
    assert t["ours"]["mean reprojection"] == pytest.approx(5.0)
    assert (t["ours"]["% < 5 px"], t["ours"]["% < 10 px"], t["ours"]["% < 30 px"]) == pytest.approx((60, 80, 100))
    assert (t["colmap"]["% < 5 px"], t["colmap"]["% < 10 px"], t["colmap"]["% < 30 px"]) == pytest.approx((20, 40, 60))
    # identity's NaN (no correspondences) video is left out, not counted as over the thresholds
    assert t["identity"]["mean reprojection"] == pytest.approx(65.0) and t["identity"]["% < 30 px"] == 0.0
    assert t["colmap"]["seconds per video"] == pytest.approx(3.0) and t["ours"]["peak memory MiB"] == 500.0


def test_all_succeed_subset_drops_videos_with_any_failure(report):
    assert report.all_succeed_videos == ["v0", "v1", "v2", "v3"]
    t = by_method(report.table_all_succeed)
    assert t["colmap"]["% registered"] == 100.0
    assert t["ours"]["ATE"] == pytest.approx(0.25) and t["colmap"]["ATE"] == pytest.approx(0.5)
    assert t["ours"]["mean reprojection"] == pytest.approx(5.75)
    assert (t["ours"]["% < 5 px"], t["ours"]["% < 10 px"]) == pytest.approx((50, 75))
    assert t["ours"]["peak memory MiB"] == 400.0


def test_side_tables(report):
    per = by_method(report.per_category)
    assert per["ours"]["pan"] == pytest.approx(0.15) and per["colmap"]["orbit"] == pytest.approx(0.7)
    assert per["colmap"]["unknown"] == pytest.approx(2.0)
    masks = {r["component"]: r for r in report.mask_table}
    assert list(masks)[0] == "union"
    assert masks["union"]["mean IoU"] == pytest.approx(0.6) and masks["union"]["videos"] == 2
    assert masks["semantic"]["mean IoU"] == pytest.approx(0.6) and masks["motion"]["videos"] == 1
    assert [(r["filter"], r["AP"], r["precision @ recall >= 0.40"]) for r in report.filter_table] == [
        ("flow", 0.75, 0.8),
        ("vlm", 0.6, 0.5),
    ]


def test_per_video_table(report):
    rows = report.per_video
    assert len(rows) == 15
    # Video order first, then the methods in their table order.
    assert [(r["video"], r["method"]) for r in rows[:4]] == [
        ("v0", "ours"),
        ("v0", "colmap"),
        ("v0", "identity"),
        ("v1", "ours"),
    ]
    failed = next(r for r in rows if r["video"] == "v4" and r["method"] == "colmap")
    assert (
        failed["% frames registered"] == pytest.approx(30.0) and failed["filled"] == "failure" and failed["ATE"] == 2.0
    )
    assert next(r for r in rows if r["video"] == "v2" and r["method"] == "ours")["RPE-r"] == pytest.approx(3.0)
    assert "## Camera pose per video" in report.markdown


def test_markdown_and_written_plots(report, tmp_path):
    md = report.markdown
    for method in ATE:
        assert f"| {method} |" in md
    assert "test box" in md and "4 videos where all methods succeed" in md and "colmap: 1 failure" in md
    assert NO_FILTERS not in md
    assert set(report.plots) == {
        "trajectory_v0.png",
        "ate_histogram.png",
        "reprojection_histogram.png",
        "pr_curves.png",
    }
    path = report.write(tmp_path / "out")
    assert path.read_text() == md
    for name in report.plots:
        assert f"]({name})" in md
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000


def test_no_filters_and_empty_inputs():
    rep = build_benchmark_report(pose_rows(), reprojection_rows(), [], [])
    assert (
        "no filter scores yet" in rep.markdown.lower() and "pr_curves.png" not in rep.plots and rep.filter_table == []
    )
    empty = build_benchmark_report([], [], [], [])
    assert empty.table == [] and empty.table_all_succeed == [] and empty.plots == {}
    assert "No video where every method succeeded" in empty.markdown


# -- dataset statistics ----------------------------------------------------------------------


def pan_row(video_id: str, degrees: float, n: int = 10, status: str = "ok", registered=None) -> dict:
    """A camera turning ``degrees`` about its vertical axis (positive: to the right) while moving along x."""
    yaw = np.linspace(0.0, degrees, n)
    poses = np.zeros((n, 3, 4))
    for k, a in enumerate(yaw):
        c2w = Rotation.from_euler("y", a, degrees=True).as_matrix()  # optical axis (sin a, 0, cos a)
        poses[k, :, :3] = c2w.T
        poses[k, :, 3] = -c2w.T @ np.array([0.1 * k, 0.0, 0.0])
    reg = np.ones(n, bool) if registered is None else np.asarray(registered)
    result = PoseResult(np.arange(n) / 10.0, poses, reg, Intrinsics(100, 100, 64, 48, 128, 96))
    return pose_row(video_id, "ours", result, range(n), status=status)


CATALOG = [
    {"video_id": "a", "duration_s": 5.0, "fps": 30.0, "width": 128, "height": 96, "status": "ok"},
    {"video_id": "b", "duration_s": 8.0, "fps": 30.0, "width": 128, "height": 96, "status": "ok"},
    {"video_id": "c", "duration_s": 12.0, "fps": 30.0, "width": 128, "height": 96, "status": "ok"},
    {"video_id": "d", "duration_s": 3.0, "fps": 30.0, "width": 128, "height": 96, "status": "ok"},
    {"video_id": "bad", "duration_s": None, "fps": None, "width": None, "height": None, "status": "unreadable"},
]
MASK_SUMMARY = [
    {"video_id": "a", "mean_union_coverage": 0.1, "p90_union_coverage": 0.2, "mean_semantic_coverage": 0.05},
    {"video_id": "b", "mean_union_coverage": 0.2, "p90_union_coverage": 0.4, "mean_semantic_coverage": 0.1},
    {"video_id": "c", "mean_union_coverage": 0.3, "p90_union_coverage": 0.6, "mean_semantic_coverage": 0.15},
]


def test_pan_right_and_failed_videos():
    poses = [
        pan_row("a", 90.0),
        pan_row("b", -40.0),
        pan_row("c", 10.0, status="sfm_failed", registered=np.zeros(10, bool)),
        pan_row("d", 60.0, registered=np.arange(10) < 5),  # 50% registered: dropped like the paper
    ]
    stats = dataset_statistics(CATALOG, poses, MASK_SUMMARY)
    rows = {r["video_id"]: r for r in stats.per_video}
    assert set(rows) == {"a", "b", "c", "d"}  # the unreadable catalog row is left out
    assert rows["a"]["final_yaw_deg"] == pytest.approx(90.0, abs=1e-6)
    assert rows["a"]["sum_abs_yaw_deg"] == pytest.approx(90.0, abs=1e-6)
    assert abs(rows["a"]["final_pitch_deg"]) < 1e-6 and rows["a"]["n_registered"] == 10
    assert rows["b"]["final_yaw_deg"] == pytest.approx(-40.0, abs=1e-6)
    assert (
        rows["c"]["pose_status"] == "sfm_failed"
        and math.isnan(rows["c"]["final_yaw_deg"])
        and rows["c"]["duration_s"] == 12.0
    )
    assert (
        rows["d"]["pose_status"] == "too_few_registered"
        and rows["d"]["n_registered"] == 5
        and math.isnan(rows["d"]["sum_abs_yaw_deg"])
    )
    assert rows["a"]["mask_area_mean_pct"] == pytest.approx(10.0) and math.isnan(rows["d"]["mask_area_p90_pct"])

    summary = {r["statistic"]: r for r in stats.summary}
    length = summary["video length (s)"]
    assert length["n"] == 4 and length["mean"] == pytest.approx(7.0) and length["median"] == pytest.approx(6.5)
    assert length["p10"] == pytest.approx(np.percentile([5, 8, 12, 3], 10))
    yaw = summary["abs final horizontal rotation (deg)"]
    assert yaw["n"] == 2 and yaw["mean"] == pytest.approx(65.0)  # failed videos do not count for rotation
    assert summary["mean dynamic mask area (%)"]["mean"] == pytest.approx(20.0)
    assert summary["p90 dynamic mask area (%)"]["p90"] == pytest.approx(np.percentile([20, 40, 60], 90))
    assert summary["mean semantic mask area (%)"]["mean"] == pytest.approx(10.0)
    assert set(stats.plots) == {"video_length_histogram.png", "mask_area_histogram.png", "rotation_statistics.png"}
    assert all(p.startswith(PNG) for p in stats.plots.values())
    assert all(line.count("|") == 7 for line in stats.markdown.splitlines() if line.startswith("|"))  # table intact
    assert "1 sfm_failed" in stats.markdown and "Videos 4-10 s long: 50.0%" in stats.markdown


def test_statistics_empty_inputs_and_method_choice():
    empty = dataset_statistics([], [], [])
    assert empty.per_video == [] and empty.plots == {} and all(r["n"] == 0 for r in empty.summary)
    assert "0 videos" in empty.markdown
    # Catalog only: lengths, no rotation, no crash.
    only = dataset_statistics(CATALOG, [], [])
    assert {r["pose_status"] for r in only.per_video} == {"missing"} and set(only.plots) == {
        "video_length_histogram.png"
    }
    two = [pan_row("a", 90.0), {**pan_row("a", 20.0), "method": "colmap"}]
    with pytest.raises(ValueError):
        dataset_statistics(CATALOG, two, [])
    picked = dataset_statistics(CATALOG, two, [], method="colmap")
    assert {r["video_id"]: r for r in picked.per_video}["a"]["final_yaw_deg"] == pytest.approx(20.0, abs=1e-6)
