"""COLMAP+Mask baseline: the COLMAP baseline with no features on dynamic pixels (paper Tables 2-3)."""

from __future__ import annotations

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.baselines import colmap, failed_result

NAME = "colmap_mask"


def run(sampled: SampledFrames, dynamic_masks: np.ndarray | None = None, **options) -> PoseResult:
    if dynamic_masks is None:
        return failed_result(sampled, "colmap_mask needs dynamic_masks", method=NAME)
    return colmap.run(sampled, dynamic_masks, use_masks=True, **options)
