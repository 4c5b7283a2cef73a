"""Precision-recall of a video filter's scores against suitable / unsuitable labels (paper Table 5).

- Curve: one point per distinct score threshold ``tau`` (highest first), a video is kept when
  ``score >= tau``; tied scores enter together. Precision = TP / kept, recall = TP / positives.
- Average precision: Pascal VOC (2010+) all-points interpolation. The curve is padded with
  ``(recall 0, precision 0)`` and ``(recall 1, precision 0)``, each precision is replaced by the
  maximum precision at any recall >= its own (the paper's smoothing, non-increasing in recall),
  and AP is the area under that step function: ``sum (r_k - r_{k-1}) * p_smooth_k`` over the
  points where recall changes. No 11-point sampling.
- Precision at recall >= 0.40: the *non-smoothed* precision at the highest threshold whose
  recall reaches 0.40 (the operating point the paper reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PRCurve:
    precision: np.ndarray  # (K,) at each threshold, highest threshold first
    recall: np.ndarray  # (K,) non-decreasing
    thresholds: np.ndarray  # (K,) distinct scores, descending
    n_positive: int


def precision_recall_curve(scores, labels) -> PRCurve:
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.array([], int)
    tp = np.cumsum(y)[last_of_tie]
    kept = last_of_tie + 1
    n_pos = int(labels.sum())
    recall = tp / n_pos if n_pos else np.zeros(len(tp))
    return PRCurve(precision=tp / kept, recall=recall, thresholds=s[last_of_tie], n_positive=n_pos)


def smoothed_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Maximum precision among the points with recall >= each point's recall (VOC smoothing)."""
    precision, recall = np.asarray(precision), np.asarray(recall)
    return np.array([precision[recall >= r].max() for r in recall])  # K is small (videos)


def average_precision(scores, labels) -> float:
    curve = precision_recall_curve(scores, labels)
    if curve.n_positive == 0:
        return float("nan")
    rec = np.r_[0.0, curve.recall, 1.0]
    prec = np.r_[0.0, curve.precision, 0.0]
    prec = np.maximum.accumulate(prec[::-1])[::-1]  # recall is sorted along the curve
    step = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[step] - rec[step - 1]) * prec[step]))


def precision_at_recall(scores, labels, min_recall: float = 0.40) -> tuple[float, float]:
    """(precision, threshold) at the highest threshold with recall >= ``min_recall``; NaNs if none."""
    curve = precision_recall_curve(scores, labels)
    hit = np.flatnonzero(curve.recall >= min_recall - 1e-12)
    if curve.n_positive == 0 or len(hit) == 0:
        return float("nan"), float("nan")
    return float(curve.precision[hit[0]]), float(curve.thresholds[hit[0]])


def evaluate_filter(scores, labels, min_recall: float = 0.40) -> dict:
    precision, threshold = precision_at_recall(scores, labels, min_recall)
    return {
        "average_precision": average_precision(scores, labels),
        "precision_at_recall": precision,
        "threshold_at_recall": threshold,
        "min_recall": min_recall,
        "n_videos": int(len(np.asarray(scores))),
        "n_positive": int(np.asarray(labels).astype(bool).sum()),
    }
