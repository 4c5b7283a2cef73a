"""TracksTo4D followed by a short bundle adjustment of its static cloud B1 (the paper's "+BA")."""

from __future__ import annotations

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.baselines import tracksto4d

NAME = "tracksto4d+ba"


def run(sampled: SampledFrames, dynamic_masks: np.ndarray | None = None, **options) -> PoseResult:
    return tracksto4d.run(sampled, dynamic_masks, ba=True, **options)
