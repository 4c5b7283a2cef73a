"""Identity baseline: the paper's failure fill used as a method ("Iden. Rot. + Rand. Tr.").

Every frame gets the identity rotation; camera centres are uniform random in [0, 1)^3 (seeded),
so the trajectory can be Sim(3)-aligned for ATE (paper Table 2, Lightspeed). With
``translation="zero"`` all poses are the identity, the "Identity" row of the reprojection
benchmark (paper Table 3, Panda-Test): every relative pose is the identity and the reprojection
error is the distance between corresponding points.

All frames are reported registered, as in the paper's tables (100% registered): this baseline is
what a failed method is scored as, not a failure itself.
"""

from __future__ import annotations

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.baselines import failed_result
from dynpose.evaluation.metrics.trajectory import fill_failed

NAME = "identity"


def run(
    sampled: SampledFrames,
    dynamic_masks: np.ndarray | None = None,
    seed: int = 0,
    translation: str = "random",
    **options,
) -> PoseResult:
    if translation not in ("random", "zero"):
        raise ValueError(f"translation must be 'random' or 'zero', not {translation!r}")
    result = fill_failed(failed_result(sampled, reason=""), seed)  # the very fill the metrics use
    if translation == "zero":
        result.poses_w2c[:, :, 3] = 0.0
    result.extra = {"method": NAME, "translation": translation, "seed": seed}
    return result
