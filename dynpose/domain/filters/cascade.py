"""The staged decision over the filter scores (DynPose-100K appendix A.2).

Stages run in the paper's order of cost: {content, flow, focal} on every video, then distortion,
then tracking, then masking, then the VLM. After each stage the running mean of the scores so
far must reach that stage's threshold (looser than the final one, so good videos are not dropped
on a partial mean); a video below it leaves the cascade there and the later, dearer stages never
see it. A video that passes every stage is kept when the mean of all its computed scores
reaches the final threshold (0.91 in the paper).

A filter that could not score a video (score None, its status says why) does not count in the
means; a stage none of whose filters scored the video is passed through, and it says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynpose.domain.status import Status

STAGES: tuple[tuple[str, ...], ...] = (
    ("content", "flow", "focal"),
    ("distortion",),
    ("tracking",),
    ("masking",),
    ("vlm",),
)
FILTERS = tuple(name for stage in STAGES for name in stage)


@dataclass
class CascadeSettings:
    """The ``filter_decisions`` settings. Stage thresholds were tuned on the seed-0 filters suite
    only (``dynpose bench filters --tune``); reports use seed 1 (docs/filters.md)."""

    # Fitted on the seed-0 filters suite (96 clips; `dynpose bench filters --suite S0 --tune`): the final
    # threshold and a common slack of 0.05 for the running means; the paper's final threshold is 0.91.
    stage_thresholds: tuple[float, ...] = (0.89, 0.89, 0.89, 0.89, 0.89)  # running mean after each stage in STAGES
    final_threshold: float = 0.94  # on the mean of every computed filter score
    mode: str = (
        "cascade"  # cascade: a stage scores only the survivors of the one before; all: every filter on every video
    )


@dataclass(frozen=True)
class Decision:
    score: float | None  # mean of every computed filter score
    kept: bool
    stage_left: str | None  # the stage the video left the cascade at ("content+flow+focal", ..., "final"); None if kept
    reason: str


def stage_name(index: int) -> str:
    return "+".join(STAGES[index])


def _mean(scores: dict[str, float | None], names) -> float | None:
    values = [scores[n] for n in names if scores.get(n) is not None and np.isfinite(scores[n])]
    return float(np.mean(values)) if values else None


def reaches(scores: dict[str, float | None], stage: int, cfg: CascadeSettings) -> bool:
    """Whether a video goes on to ``stage``: it passed every stage before it."""
    return all(_stage_verdict(scores, i, cfg) is None for i in range(stage))


def _stage_verdict(scores: dict[str, float | None], index: int, cfg: CascadeSettings) -> str | None:
    """None when the video passes stage ``index``, else why it leaves there."""
    so_far = [n for stage in STAGES[: index + 1] for n in stage]
    if not any(scores.get(n) is not None for n in STAGES[index]):
        return None  # nothing measured at this stage (e.g. no VLM configured): it cannot reject
    partial = _mean(scores, so_far)
    threshold = cfg.stage_thresholds[index]
    if partial is None or partial >= threshold:
        return None
    low = min((n for n in so_far if scores.get(n) is not None), key=lambda n: scores[n])
    return f"mean {partial:.2f} < {threshold:.2f} after {stage_name(index)} (lowest: {low} {scores[low]:.2f})"


def decide(
    scores: dict[str, float | None],
    cfg: CascadeSettings,
    upstream_status: str = Status.ok,
    statuses: dict[str, str] | None = None,
) -> Decision:
    """The cascade's decision for one video from its filter scores (None: not computed); a filter's
    status in ``statuses`` says in the reason why it did not score (e.g. ``vlm (skipped)``)."""
    if upstream_status != Status.ok:
        return Decision(None, False, "catalog", f"catalog status {upstream_status}")
    for index in range(len(STAGES)):
        why = _stage_verdict(scores, index, cfg)
        if why is not None:
            return Decision(_mean(scores, scores), False, stage_name(index), why)
    final = _mean(scores, scores)
    if final is None:
        return Decision(None, False, "final", "no filter could score this video")
    statuses = statuses or {}
    unscored = [f"{n} ({statuses[n]})" if statuses.get(n) else n for n in FILTERS if scores.get(n) is None]
    note = f"; not scored: {', '.join(unscored)}" if unscored else ""
    if final < cfg.final_threshold:
        return Decision(final, False, "final", f"mean {final:.3f} < final threshold {cfg.final_threshold}{note}")
    return Decision(final, True, None, f"mean {final:.3f} >= {cfg.final_threshold}{note}")
