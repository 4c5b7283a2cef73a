"""The filter benchmark (DynPose-100K Table 5): each filter alone, the cumulative ablation, the
cascade's operating point, seconds per video, and what each got wrong by category.

Scores come from the filter tables (one per filter) and ``filter_decisions``; labels from the
catalog (``labels.csv`` at the source root). A video a filter could not score counts as score 0
(rejected) in that filter's curve, as a production cascade would treat it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from dynpose.domain.filters.cascade import FILTERS, STAGES, CascadeSettings, decide
from dynpose.evaluation.metrics.precision_recall import evaluate_filter, precision_recall_curve

# The paper's ablation order (Table 5): Hands23, +Flow, +Tracking, +Masking, +Focal, +Distort, +VLM.
ABLATION = ("content", "flow", "tracking", "masking", "focal", "distortion", "vlm")


# What a perfect VLM answers for each synthetic variant (dynpose.domain.synth.variants): the
# paper's questions whose true answer is yes. Tripod, shot_change, zoom and low_res are reasons no
# question asks about, so even a perfect VLM lets them through (the other filters must catch them).
ORACLE_YES: dict[str, tuple[str, ...]] = {
    "static_scene": ("q_static_scene",),
    "fisheye": ("q_distorted",),
    "huge_object": ("q_background_unmatchable",),
    "long_focal": ("q_long_focal", "q_background_unmatchable"),
    "cartoon": ("q_synthetic",),
    "overlay": ("q_post_processed",),
    "side_by_side": ("q_post_processed",),
}


def oracle_labels(reasons: dict[str, str]) -> dict[str, dict[str, bool]]:
    """{video_id: {question: True}} for the oracle VLM server from each video's labels.csv reason."""
    from dynpose.domain.synth.variants import VARIANTS

    variant_of = {reason: variant for variant, (_, _, reason) in VARIANTS.items()}
    out = {}
    for video_id, reason in reasons.items():
        if reason not in variant_of:
            raise ValueError(f"no synthetic variant has the reason {reason!r}: the oracle needs a generated suite")
        out[video_id] = {q: True for q in ORACLE_YES.get(variant_of[reason], ())}
    return out


@dataclass
class Labelled:
    video_id: str
    suitable: int
    category: str


def _curve_row(name: str, kind: str, scores: np.ndarray, labels: np.ndarray) -> dict:
    m = evaluate_filter(scores, labels)
    curve = precision_recall_curve(scores, labels)
    return {
        "name": name,
        "kind": kind,
        "average_precision": m["average_precision"],
        "precision_at_recall_40": m["precision_at_recall"],
        "recall": list(map(float, curve.recall)),
        "precision": list(map(float, curve.precision)),
        "n_videos": int(len(labels)),
        "n_positive": int(labels.sum()),
    }


def _wrong(videos: list[Labelled], predicted: np.ndarray) -> dict:
    """{category: count} of videos the prediction got wrong (kept unsuitable, or rejected suitable)."""
    out: dict[str, int] = {}
    for v, keep in zip(videos, predicted, strict=True):
        if bool(keep) != bool(v.suitable):
            out[v.category] = out.get(v.category, 0) + 1
    return dict(sorted(out.items()))


def benchmark_rows(
    videos: list[Labelled],
    scores: dict[str, dict[str, float | None]],
    seconds: dict[str, dict[str, float]],
    decisions: dict[str, dict],
) -> list[dict]:
    """Rows of the filter benchmark: ``alone`` per filter, ``cumulative`` (the paper's ablation),
    ``cascade`` (the decision score, with precision / recall of what it kept)."""
    if not videos or len({v.suitable for v in videos}) < 2:
        return []
    labels = np.array([v.suitable for v in videos])
    present = [n for n in ABLATION if any(scores.get(v.video_id, {}).get(n) is not None for v in videos)]

    def column(name: str) -> np.ndarray:
        return np.array([scores.get(v.video_id, {}).get(name) or 0.0 for v in videos], float)

    rows = []
    for name in present:
        row = _curve_row(name, "alone", column(name), labels)
        secs = [seconds.get(name, {}).get(v.video_id) for v in videos]
        row["seconds_per_video"] = float(np.mean([s for s in secs if s])) if any(secs) else float("nan")
        row["wrong_by_category"] = json.dumps(_wrong(videos, column(name) >= 0.5))
        rows.append(row)
    for k in range(1, len(present) + 1):
        names = present[:k]
        parts = [[scores.get(v.video_id, {}).get(n) for n in names] for v in videos]
        mean = np.array(
            [np.mean([p for p in ps if p is not None]) if any(p is not None for p in ps) else 0.0 for ps in parts]
        )
        rows.append(_curve_row(names[0] if k == 1 else "+" + names[-1], "cumulative", mean, labels))
    kept = np.array([bool(decisions.get(v.video_id, {}).get("kept")) for v in videos])
    row = _curve_row(
        "cascade", "cascade", np.array([decisions.get(v.video_id, {}).get("score") or 0.0 for v in videos]), labels
    )
    tp = int((kept & (labels == 1)).sum())
    row["precision_kept"] = tp / kept.sum() if kept.sum() else float("nan")
    row["recall_kept"] = tp / labels.sum()
    row["n_kept"] = int(kept.sum())
    row["wrong_by_category"] = json.dumps(_wrong(videos, kept))
    left: dict[str, int] = {}
    for v in videos:
        stage = decisions.get(v.video_id, {}).get("stage_left")
        if stage:
            left[stage] = left.get(stage, 0) + 1
    row["stage_left_counts"] = json.dumps(left)
    rows.append(row)
    return rows


def tune_cascade(
    videos: list[Labelled],
    scores: dict[str, dict[str, float | None]],
    min_recall: float = 0.40,
    base: CascadeSettings | None = None,
) -> tuple[CascadeSettings, dict]:
    """Stage and final thresholds that maximise the kept set's precision at recall >= ``min_recall``.

    The final threshold sweeps the observed means; every stage threshold is the final one minus a
    common slack (the paper's "looser thresholds on the partial averages"), the smallest slack of
    equal precision preferred, as it rejects the most videos early (the cheapest cascade).
    Use it on a tuning split only; report on another.
    """
    base = base or CascadeSettings()
    labels = np.array([v.suitable for v in videos])
    best: tuple | None = None
    finals = sorted(
        {round(float(x), 3) for v in videos for x in [_final_mean(scores.get(v.video_id, {}))] if x is not None}
    )
    for slack in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
        for final in finals:
            cfg = CascadeSettings(tuple(max(0.0, final - slack) for _ in STAGES), final, base.mode)
            kept = np.array([decide(scores.get(v.video_id, {}), cfg).kept for v in videos])
            if not kept.any():
                continue
            recall = (kept & (labels == 1)).sum() / max(1, labels.sum())
            precision = (kept & (labels == 1)).sum() / kept.sum()
            if recall < min_recall:
                continue
            key = (precision, -slack, recall)
            if best is None or key > best[0]:
                best = (
                    key,
                    cfg,
                    {"precision": float(precision), "recall": float(recall), "slack": slack, "kept": int(kept.sum())},
                )
    if best is None:
        return base, {"precision": float("nan"), "recall": float("nan"), "slack": None, "kept": 0}
    return best[1], best[2]


def _final_mean(s: dict[str, float | None]) -> float | None:
    values = [s.get(n) for n in FILTERS if s.get(n) is not None]
    return float(np.mean(values)) if values else None
