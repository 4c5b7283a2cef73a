"""Evaluation figures as small PNGs (800 x 600 by default) for Dagster metadata or reports.

Every function returns the PNG bytes and, given ``path``, also writes them there.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dynpose.domain.camera import PoseResult, camera_centers  # noqa: E402
from dynpose.evaluation.metrics.precision_recall import precision_recall_curve, smoothed_precision  # noqa: E402
from dynpose.evaluation.metrics.trajectory import align_sim3, fill_nearest  # noqa: E402

SIZE = (8.0, 6.0)  # inches at DPI 100 -> 800 x 600 pixels
DPI = 100
AXIS = "xyz"


def _finish(fig, path: str | Path | None) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def plot_trajectories(
    gt: PoseResult, preds: dict[str, PoseResult], axes: tuple[int, int] = (0, 2), title: str = "", path=None
) -> bytes:
    """Camera centres of each prediction after Sim(3) alignment to the ground truth, top-down.

    ``axes`` picks the ground-truth world axes drawn; (0, 2) is x-z, the top-down view for an
    OpenCV-style world whose y axis points down. Unregistered frames are filled from the nearest
    registered one; a prediction that cannot be aligned is listed in the legend as such.
    """
    fig, ax = plt.subplots(figsize=SIZE)
    centres = camera_centers(np.asarray(gt.poses_w2c)[np.asarray(gt.registered, bool)])
    ax.plot(centres[:, axes[0]], centres[:, axes[1]], "k--", lw=2, label="ground truth")
    for name, pred in preds.items():
        try:
            used = fill_nearest(pred) if not np.all(pred.registered) else pred
            _, est, _ = align_sim3(used, gt)
            xyz = est.positions_xyz
            ax.plot(xyz[:, axes[0]], xyz[:, axes[1]], "-", lw=1.5, label=name)
        except Exception:  # no registered frame, degenerate or no time overlap: nothing to draw
            ax.plot([], [], "-", label=f"{name} (not aligned)")
    ax.set_xlabel(AXIS[axes[0]])
    ax.set_ylabel(AXIS[axes[1]])
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "Trajectories after Sim(3) alignment")
    ax.legend(loc="best")
    return _finish(fig, path)


def plot_histograms(
    values: dict[str, np.ndarray],
    xlabel: str,
    bins: int | np.ndarray = 30,
    title: str = "",
    log_x: bool = False,
    path=None,
) -> bytes:
    """Overlaid histograms of an error (or any quantity) for several methods."""
    fig, ax = plt.subplots(figsize=SIZE)
    finite = [np.asarray(v, float)[np.isfinite(v)] for v in values.values()]
    allv = np.concatenate(finite) if finite else np.array([])
    if np.isscalar(bins) and len(allv):
        lo, hi = float(allv.min()), float(allv.max())
        if log_x:
            lo = max(lo, 1e-6)
            bins = np.geomspace(lo, max(hi, lo * 10), int(bins) + 1)
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    for (name, _), v in zip(values.items(), finite):
        ax.hist(v, bins=bins, alpha=0.5, label=f"{name} (n={len(v)})")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(loc="best")
    return _finish(fig, path)


def plot_pr_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    smoothed: bool = True,
    operating_recall: float | None = 0.40,
    title: str = "",
    path=None,
) -> bytes:
    """Precision-recall curves of several filters; ``curves`` maps name -> (scores, labels).

    With ``smoothed`` the VOC-smoothed curve is drawn (paper Figure 5 / Table 5 left).
    """
    fig, ax = plt.subplots(figsize=SIZE)
    for name, (scores, labels) in curves.items():
        curve = precision_recall_curve(scores, labels)
        if smoothed:  # precision at recall r is the max over recall >= r: a step held to its left
            prec = smoothed_precision(curve.precision, curve.recall)
            ax.plot(np.r_[0.0, curve.recall], np.r_[prec[:1], prec], drawstyle="steps-pre", label=name)
        else:
            ax.plot(curve.recall, curve.precision, label=name)
    if operating_recall is not None:
        ax.axvline(operating_recall, color="gray", ls=":", lw=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or ("Precision-recall (VOC smoothed)" if smoothed else "Precision-recall"))
    ax.legend(loc="best")
    return _finish(fig, path)


def plot_rotation_statistics(stats: list[dict], bins: int = 30, title: str = "", path=None) -> bytes:
    """The four histograms of paper Figure 17 from ``rotation_statistics`` rows (absolute degrees)."""
    keys = [
        ("final_yaw_deg", "final horizontal rotation (deg)"),
        ("final_pitch_deg", "final vertical rotation (deg)"),
        ("sum_abs_yaw_deg", "summed |horizontal rotation| (deg)"),
        ("sum_abs_pitch_deg", "summed |vertical rotation| (deg)"),
    ]
    fig, axs = plt.subplots(2, 2, figsize=SIZE)
    for ax, (key, label) in zip(axs.ravel(), keys):
        ax.hist(np.abs([row[key] for row in stats]), bins=bins, color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("videos")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
