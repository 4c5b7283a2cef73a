"""Dataset statistics of the annotated videos: length and dynamic mask area (paper Figure 6) and
camera rotation (Figure 17), per video and summarized, with histograms.

The per-quantity definitions live in ``dynpose.evaluation.metrics.dataset_stats`` (rotation axes, units);
this module joins the catalog, pose and mask-summary rows per video and aggregates them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynpose.domain.annotate.decisions import MIN_REGISTERED
from dynpose.domain.poses import pose_from_row
from dynpose.evaluation.markdown import markdown_table, write_markdown_with_plots
from dynpose.evaluation.metrics import plots
from dynpose.evaluation.metrics.dataset_stats import pose_statistics, video_length

NAN = float("nan")
ROTATION_KEYS = ("final_yaw_deg", "final_pitch_deg", "sum_abs_yaw_deg", "sum_abs_pitch_deg")
# (per-video column, summary label, take the absolute value): finals are signed, Figure 17 plots
# absolute values. No '|' in labels: they go into markdown tables.
SUMMARY = [
    ("duration_s", "video length (s)", False),
    ("registered_ratio", "registered frames (fraction)", False),
    ("mask_area_mean_pct", "mean dynamic mask area (%)", False),
    ("mask_area_p90_pct", "p90 dynamic mask area (%)", False),
    ("final_yaw_deg", "abs final horizontal rotation (deg)", True),
    ("final_pitch_deg", "abs final vertical rotation (deg)", True),
    ("sum_abs_yaw_deg", "summed abs horizontal rotation (deg)", False),
    ("sum_abs_pitch_deg", "summed abs vertical rotation (deg)", False),
]


def _num(value) -> float:
    return NAN if value is None else float(value)


@dataclass
class DatasetStatistics:
    per_video: list[dict]
    summary: list[dict]  # statistic, n, mean, median, p10, p90 over the videos where it is defined
    markdown: str
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    def write(self, folder) -> Path:
        """Write statistics.md and its PNGs into ``folder``; returns statistics.md's path."""
        return write_markdown_with_plots(folder, "statistics.md", self.markdown, self.plots)


def summarize(name: str, values) -> dict:
    a = np.array([_num(v) for v in values], np.float64)
    a = a[np.isfinite(a)]  # NaN: not defined for that video (no poses, no masks)
    if not len(a):
        return {"statistic": name, "n": 0, "mean": NAN, "median": NAN, "p10": NAN, "p90": NAN}
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return {
        "statistic": name,
        "n": int(len(a)),
        "mean": float(a.mean()),
        "median": float(med),
        "p10": float(p10),
        "p90": float(p90),
    }


def _pose_columns(pose: dict | None, min_registered: float) -> dict:
    """Frame counts, status and rotation of one pose row; rotation only for a successful video."""
    out = {
        "pose_status": "missing",
        "n_frames": 0,
        "n_registered": 0,
        "registered_ratio": NAN,
        "length_s": NAN,
        **dict.fromkeys(ROTATION_KEYS, NAN),
    }
    if pose is None:
        return out
    registered = np.asarray(pose.get("registered") or [], bool)
    out.update(
        n_frames=len(registered),
        n_registered=int(registered.sum()),
        registered_ratio=float(registered.mean()) if len(registered) else 0.0,
        length_s=video_length(pose.get("timestamp_s") or []),
    )
    status = pose.get("status") or "ok"
    if status != "ok":  # a failed method may have left no usable poses: do not parse them
        out["pose_status"] = status
    elif out["registered_ratio"] < min_registered:  # the paper drops these trajectories
        out["pose_status"] = "too_few_registered"
    else:
        stats = pose_statistics(pose_from_row(pose))
        out.update(pose_status="ok", **{k: stats[k] for k in ROTATION_KEYS})
    return out


def dataset_statistics(
    catalog_rows: list[dict],
    pose_rows: list[dict],
    mask_summary_rows: list[dict],
    *,
    method: str | None = None,
    min_registered: float = MIN_REGISTERED,
    title: str = "Dataset statistics",
) -> DatasetStatistics:
    """Per-video and summary statistics of videos whose catalog status is ok.

    Every such video counts for length and mask area; only videos whose poses succeeded
    (status ok, >= ``min_registered`` frames registered) count for rotation. ``method`` selects one
    method's pose rows when the table holds several (each video must then have one row).
    """
    bad = {r["video_id"] for r in catalog_rows if (r.get("status") or "ok") != "ok"}
    catalog = {r["video_id"]: r for r in catalog_rows if r["video_id"] not in bad}
    poses: dict[str, dict] = {}
    for r in pose_rows:
        if method is None or r["method"] == method:
            if r["video_id"] in poses:
                raise ValueError(f"several pose rows for video {r['video_id']!r}: pass method=")
            poses[r["video_id"]] = r
    masks = {r["video_id"]: r for r in mask_summary_rows}
    # Per-component mean coverages besides the union ("mean_<component>_coverage").
    found = (re.fullmatch(r"mean_(\w+)_coverage", k) for r in mask_summary_rows for k in r)
    comps = list(dict.fromkeys(m[1] for m in found if m and m[1] != "union"))
    video_ids = [v for v in dict.fromkeys([*catalog, *poses, *masks]) if v not in bad]

    per_video = []
    for vid in video_ids:
        cat, mask = catalog.get(vid, {}), masks.get(vid, {})
        pose = _pose_columns(poses.get(vid), min_registered)
        duration = _num(cat.get("duration_s"))
        per_video.append(
            {
                "video_id": vid,
                # The catalog's duration; the sampled frames' span when the catalog has none.
                "duration_s": duration if np.isfinite(duration) else pose["length_s"],
                **{k: v for k, v in pose.items() if k != "length_s"},
                "mask_area_mean_pct": 100.0 * _num(mask.get("mean_union_coverage")),
                "mask_area_p90_pct": 100.0 * _num(mask.get("p90_union_coverage")),
                **{f"mask_{c}_mean_pct": 100.0 * _num(mask.get(f"mean_{c}_coverage")) for c in comps},
            }
        )

    col = lambda key, use_abs=False: [abs(r[key]) if use_abs else r[key] for r in per_video]  # noqa: E731
    summary = [summarize(label, col(key, a)) for key, label, a in SUMMARY]
    summary += [summarize(f"mean {c} mask area (%)", col(f"mask_{c}_mean_pct")) for c in comps]

    figures = {}
    durations = np.array(col("duration_s"), float)
    if np.isfinite(durations).any():
        figures["video_length_histogram.png"] = plots.plot_histograms(
            {"videos": durations}, "video length (s)", title="Video length (Figure 6, left)"
        )
    area = {"mean": np.array(col("mask_area_mean_pct"), float), "p90": np.array(col("mask_area_p90_pct"), float)}
    if any(np.isfinite(v).any() for v in area.values()):
        figures["mask_area_histogram.png"] = plots.plot_histograms(
            area, "dynamic mask area (% of frame)", title="Dynamic mask area per video (Figure 6, right)"
        )
    ok = [r for r in per_video if r["pose_status"] == "ok"]
    if ok:
        figures["rotation_statistics.png"] = plots.plot_rotation_statistics(ok, title="Camera rotation (Figure 17)")

    status = {
        s: sum(r["pose_status"] == s for r in per_video) for s in dict.fromkeys(r["pose_status"] for r in per_video)
    }
    md = [
        f"# {title}",
        "",
        f"{len(per_video)} videos ({len(bad)} catalog rows with a failed status left out). Pose status: "
        + (", ".join(f"{n} {s}" for s, n in status.items()) or "none")
        + "; rotation is measured on the ok ones only.",
        "",
    ]
    md += [markdown_table(summary), ""]
    if per_video:
        share = lambda hits, of: f"{100.0 * hits / of:.1f}%" if of else "n/a"  # noqa: E731
        n_dur = int(np.isfinite(durations).sum())
        md += [
            f"- Videos 4-10 s long: {share(int(((durations >= 4) & (durations <= 10)).sum()), n_dur)} "
            "(paper Figure 6: the majority).",
            "- Final horizontal rotation over 30 deg: "
            f"{share(sum(abs(r['final_yaw_deg']) > 30 for r in ok), len(ok))}; "
            f"summed horizontal rotation over 75 deg: {share(sum(r['sum_abs_yaw_deg'] > 75 for r in ok), len(ok))} "
            "(paper Figure 17: 'often').",
            "",
        ]
    if figures:
        md += ["## Figures", ""] + [f"![{Path(n).stem.replace('_', ' ')}]({n})" for n in figures] + [""]
    return DatasetStatistics(per_video, summary, "\n".join(md), figures)
