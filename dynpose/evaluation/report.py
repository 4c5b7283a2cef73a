"""The benchmark report: paper Tables 2 / 3 for every method, ATE per camera trajectory type, mask
IoU, filter precision / recall, and figures, as markdown plus PNGs (docs/evaluation.md).

Inputs are plain rows as read from the evaluation Parquet tables; the metrics in them were already
computed (failures filled) by ``dynpose.evaluation.metrics``. This module only aggregates and presents.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynpose.evaluation.markdown import markdown_table, write_markdown_with_plots
from dynpose.evaluation.metrics import plots
from dynpose.evaluation.metrics.precision_recall import smoothed_precision
from dynpose.evaluation.metrics.reprojection import THRESHOLDS, summarize_reprojection
from dynpose.evaluation.metrics.trajectory import summarize_trajectories

NAN = float("nan")
COLUMNS = [
    "method",
    "% registered",
    "ATE",
    "RPE-t",
    "RPE-r",
    "mean reprojection",
    *(f"% < {t:g} px" for t in THRESHOLDS),
    "seconds per video",
    "peak memory MiB",
]
NO_FILTERS = "No filter scores yet: the filter products have not been built, so no precision / recall is reported."

FAILURE_NOTE = (
    "A method *fails* on a video when it registers fewer than 80% of the video's frames; "
    "'% registered' is the share of videos where it succeeded. For ATE / RPE a failed trajectory is "
    "replaced by identity rotations and seeded uniform random camera centres in [0, 1)^3 on the "
    "ground-truth timestamps (paper Table 2, left), and a registered but degenerate one (Sim(3) "
    "alignment impossible) is scored the same way; in a successful trajectory, unregistered frames take "
    "the pose of the nearest registered frame. For reprojection, unregistered frames take the nearest "
    "registered pose and a sequence with no registered frame is the identity (paper Table 3). "
    "The *all succeed* table restricts every column to the videos on which every method succeeded "
    "(the right half of the paper's tables). ATE and RPE-t are in ground-truth units, RPE-r in degrees, "
    "reprojection in 720p-normalised pixels ('% < X px': share of videos whose mean error is under X). "
    "Seconds per video is the mean wall time; peak memory is the largest peak over videos."
)


def _num(value) -> float:
    """A table cell as a float; a Parquet null becomes NaN."""
    return NAN if value is None else float(value)


def _finite(values) -> np.ndarray:
    a = np.array([_num(v) for v in values], np.float64)
    return a[np.isfinite(a)]


def finite_mean(values) -> float:
    """Mean of the finite values (None and NaN skipped); NaN, without a warning, when there are none."""
    a = _finite(values)
    return float(a.mean()) if len(a) else NAN


def finite_median(values) -> float:
    a = _finite(values)
    return float(np.median(a)) if len(a) else NAN


def _nanmax(values) -> float:
    a = _finite(values)
    return float(a.max()) if len(a) else NAN


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))


def _md(rows: list[dict], empty: str = "_No rows._") -> str:
    return markdown_table(rows) if rows else empty


@dataclass
class BenchmarkReport:
    table: list[dict]  # one row per method, COLUMNS, over all videos (failures filled)
    table_all_succeed: list[dict]  # the same over the videos where every method succeeded
    all_succeed_videos: list[str]
    per_category: list[dict]  # mean ATE per method (rows) and camera trajectory type (columns)
    per_video: list[dict]  # one row per video and method (per_video_table)
    mask_table: list[dict]  # mean IoU per mask component, union first
    filter_table: list[dict]  # AP and precision at recall >= 0.40 per filter
    markdown: str
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    def write(self, folder) -> Path:
        """Write report.md and the PNGs it links to into ``folder``; returns report.md's path."""
        return write_markdown_with_plots(folder, "report.md", self.markdown, self.plots)


def method_table(
    pose_rows: list[dict], reprojection_rows: list[dict], methods: list[str], videos: set | None = None
) -> list[dict]:
    """Paper Tables 2 and 3 side by side, one row per method, over ``videos`` (all when None)."""
    keep = lambda r: videos is None or r["video_id"] in videos  # noqa: E731
    out = []
    for method in methods:
        poses = [r for r in pose_rows if r["method"] == method and keep(r)]
        # Videos without ground-truth poses (correspondences only) carry no ATE: not averaged.
        traj = summarize_trajectories([r for r in poses if np.isfinite(_num(r.get("ate")))])
        # NaN reprojection: a video without ground-truth correspondences.
        reproj = summarize_reprojection(
            _finite(r.get("reprojection_px") for r in reprojection_rows if r["method"] == method and keep(r))
        )
        out.append(
            {
                "method": method,
                "% registered": 100.0 * float(np.mean([bool(r["success"]) for r in poses])) if poses else NAN,
                "ATE": traj["ate"],
                "RPE-t": traj["rpe_t"],
                "RPE-r": traj["rpe_r"],
                "mean reprojection": reproj["mean"],
                **{f"% < {t:g} px": reproj[f"pct_under_{t:g}"] for t in THRESHOLDS},
                "seconds per video": finite_mean(r.get("seconds") for r in poses),
                "peak memory MiB": _nanmax(r.get("peak_mib") for r in poses),
            }
        )
    return out


def all_succeed_videos(pose_rows: list[dict], methods: list[str]) -> list[str]:
    """Videos on which every method has a pose row with success (a missing row is not a success)."""
    success: dict[str, dict[str, bool]] = {}
    for r in pose_rows:
        success.setdefault(r["video_id"], {})[r["method"]] = bool(r["success"])
    return [v for v, per in success.items() if methods and all(per.get(m, False) for m in methods)]


def ate_by_type(pose_rows: list[dict], methods: list[str]) -> tuple[str, list[dict]]:
    """Mean ATE per method and camera trajectory type (the ``category`` when no row has a trajectory)."""
    key = "trajectory" if any(r.get("trajectory") for r in pose_rows) else "category"
    group = lambda r: r.get(key) or "unknown"  # noqa: E731
    types = sorted({group(r) for r in pose_rows})
    rows = []
    for method in methods:
        mine = [r for r in pose_rows if r["method"] == method]
        rows.append({"method": method, **{t: finite_mean(r.get("ate") for r in mine if group(r) == t) for t in types}})
    return key, rows


def per_video_table(pose_rows: list[dict], methods: list[str]) -> list[dict]:
    """One row per video and method, in clip order: registered share, ATE, RPE, and how it was filled."""
    name = lambda r: r.get("clip") or r["video_id"]  # noqa: E731
    order = {m: i for i, m in enumerate(methods)}
    return [
        {
            "video": name(r),
            "trajectory": r.get("trajectory") or r.get("category") or "",
            "method": r["method"],
            "% frames registered": 100.0 * _num(r.get("registered_ratio")),
            "ATE": _num(r.get("ate")),
            "RPE-t": _num(r.get("rpe_t")),
            "RPE-r": _num(r.get("rpe_r")),
            "filled": r.get("filled") if r.get("filled") not in (None, "none") else "",
        }
        for r in sorted(pose_rows, key=lambda r: (name(r), order.get(r["method"], len(order))))
    ]


def mask_table(mask_rows: list[dict]) -> list[dict]:
    """Mean and median IoU of every ``iou_*`` column over the videos where it is defined, union first."""
    comps = sorted(
        dict.fromkeys(k for r in mask_rows for k in r if k.startswith("iou_")), key=lambda k: k != "iou_union"
    )
    out = []
    for comp in comps:
        vals = _finite(r.get(comp) for r in mask_rows)
        out.append(
            {
                "component": comp[4:],
                "mean IoU": float(vals.mean()) if len(vals) else NAN,
                "median IoU": float(np.median(vals)) if len(vals) else NAN,
                "videos": len(vals),
            }
        )
    return out


def filter_table(filter_rows: list[dict]) -> list[dict]:
    """Table 5: each filter alone, the cumulative ablation (content, +flow, ...) and the cascade."""
    return [
        {
            "filter": r["name"],
            "rows": r.get("kind") or "",
            "AP": _num(r.get("average_precision")),
            "precision @ recall >= 0.40": _num(r.get("precision_at_recall_40")),
            "kept: precision": _num(r.get("precision_kept")),
            "kept: recall": _num(r.get("recall_kept")),
            "s / video": _num(r.get("seconds_per_video")),
            "videos": r.get("n_videos"),
            "positives": r.get("n_positive"),
        }
        for r in filter_rows
    ]


def plot_pr_rows(filter_rows: list[dict], operating_recall: float = 0.40) -> bytes:
    """VOC-smoothed PR curves from stored (recall, precision) lists.

    ``plots.plot_pr_curves`` wants raw scores and labels, which the filter table no longer has;
    this draws the same smoothed step curve from the stored curve points.
    """
    fig, ax = plots.plt.subplots(figsize=plots.SIZE)
    for r in filter_rows:
        rec, prec = np.asarray(r["recall"], float), np.asarray(r["precision"], float)
        if len(rec):
            smooth = smoothed_precision(prec, rec)
            label = f"{r['name']} (AP {_num(r.get('average_precision')):.3f})"
            ax.plot(np.r_[0.0, rec], np.r_[smooth[:1], smooth], drawstyle="steps-pre", label=label)
    ax.axvline(operating_recall, color="gray", ls=":", lw=1)
    ax.set(
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        xlabel="recall",
        ylabel="precision",
        title="Filter precision-recall (VOC smoothed)",
    )
    ax.legend(loc="best")
    return plots._finish(fig, None)


def _fill_note(pose_rows: list[dict], methods: list[str]) -> str:
    """How many trajectories of each method were filled, and how (the ``filled`` column)."""
    parts = []
    for method in methods:
        counts = Counter(
            r.get("filled") for r in pose_rows if r["method"] == method and r.get("filled") not in (None, "none")
        )
        if counts:
            parts.append(f"{method}: " + ", ".join(f"{n} {how}" for how, n in sorted(counts.items())))
    return "Filled trajectories per method: " + ("; ".join(parts) if parts else "none") + "."


def _plots(pose_rows, reprojection_rows, filter_rows, methods, examples, seed, max_examples) -> dict[str, bytes]:
    out = {}
    if examples:
        # A reproducible few when there are many.
        picks = sorted(
            np.random.default_rng(seed).choice(len(examples), min(max_examples, len(examples)), replace=False)
        )
        for i in picks:
            ex = examples[i]
            title = f"{ex['video_id']}: trajectories after Sim(3) alignment"
            out[f"trajectory_{_safe(ex['video_id'])}.png"] = plots.plot_trajectories(ex["gt"], ex["preds"], title=title)
    ate = {m: _finite(r.get("ate") for r in pose_rows if r["method"] == m) for m in methods}
    if any(len(v) for v in ate.values()):
        out["ate_histogram.png"] = plots.plot_histograms(
            ate, "ATE per video (ground-truth units)", title="ATE per video, failures filled"
        )
    reproj = {m: _finite(r.get("reprojection_px") for r in reprojection_rows if r["method"] == m) for m in methods}
    if any(len(v) for v in reproj.values()):
        out["reprojection_histogram.png"] = plots.plot_histograms(
            reproj, "mean reprojection error per video (720p px)", title="Reprojection error per video"
        )
    if filter_rows:
        out["pr_curves.png"] = plot_pr_rows(filter_rows)
    return out


def build_benchmark_report(
    pose_rows: list[dict],
    reprojection_rows: list[dict],
    mask_rows: list[dict],
    filter_rows: list[dict],
    examples: list[dict] | None = None,
    seed: int = 0,
    *,
    title: str = "DynPose benchmark",
    machine: str | None = None,
    max_examples: int = 3,
) -> BenchmarkReport:
    """Aggregate per-video evaluation rows into tables, markdown and PNGs (module docstring)."""
    methods = list(dict.fromkeys([r["method"] for r in pose_rows] + [r["method"] for r in reprojection_rows]))
    pose_methods = list(dict.fromkeys(r["method"] for r in pose_rows))
    videos = list(dict.fromkeys([r["video_id"] for r in pose_rows] + [r["video_id"] for r in reprojection_rows]))
    subset = all_succeed_videos(pose_rows, pose_methods)
    table = method_table(pose_rows, reprojection_rows, methods)
    table_ok = method_table(pose_rows, reprojection_rows, methods, set(subset)) if subset else []
    type_key, per_type = ate_by_type(pose_rows, pose_methods)
    per_video = per_video_table(pose_rows, pose_methods)
    masks, filters = mask_table(mask_rows), filter_table(filter_rows)
    figures = _plots(pose_rows, reprojection_rows, filter_rows, methods, examples, seed, max_examples)

    md = [f"# {title}", ""]
    if machine:
        md += [f"Machine: {machine}", ""]
    md += [f"## Camera pose: all {len(videos)} videos (failures filled)", "", _md(table), ""]
    counts = {m: len({r["video_id"] for r in pose_rows if r["method"] == m}) for m in pose_methods}
    missing = [f"{m} ({n} of {len(videos)})" for m, n in counts.items() if n < len(videos)]
    if missing:
        md += ["Methods without a row for every video: " + ", ".join(missing) + ".", ""]
    md += [
        f"## Camera pose: {len(subset)} videos where all methods succeed",
        "",
        _md(table_ok, "_No video where every method succeeded._"),
        "",
        FAILURE_NOTE,
        "",
        _fill_note(pose_rows, pose_methods),
        "",
    ]
    md += [f"## ATE by camera {type_key}", "", _md(per_type if per_type and len(per_type[0]) > 1 else []), ""]
    md += ["## Camera pose per video", "", _md(per_video), ""]
    md += ["## Dynamic masks (IoU against ground truth)", "", _md(masks, "_No mask evaluation rows._"), ""]
    if mask_rows:
        md += [
            f"Mean dynamic coverage: ground truth {finite_mean(r.get('gt_coverage') for r in mask_rows):.3f}, "
            f"predicted {finite_mean(r.get('pred_coverage') for r in mask_rows):.3f} (fraction of the frame).",
            "",
        ]
    md += ["## Filters (precision / recall against suitability labels)", "", _md(filters, NO_FILTERS), ""]
    if figures:
        md += ["## Figures", ""] + [f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in figures] + [""]
    return BenchmarkReport(table, table_ok, subset, per_type, per_video, masks, filters, "\n".join(md), figures)
