"""Per-video pose quality: registration and reprojection-error tiers (DynPose-100K A.2, Table 6).

- A trajectory with fewer than 80% of its frames registered fails (paper appendix A.2).
- Otherwise its tier comes from the mean SfM reprojection error in pixels of the annotated
  resolution, with the paper's Table 6 cut-offs: ``tier1`` < 1.00 <= ``tier2`` < 1.18 <=
  ``tier3`` < 1.37 <= ``tier4``. Lower tiers had lower pose error on Panda-Test; the paper
  fine-tunes DUSt3R on tier1-3 (reprojection error < 1.37).
- A video that failed (too few registered frames, no reprojection error) is ``failed``.
- So is one whose focal length is implausible: outside ``TierSettings.plausible_focal`` x the long image side
  (a horizontal field of view of about 11 to 127 degrees on a 16:9 frame). Bundle adjustment on a
  slow dolly can trade focal length for depth and land at 20x the true focal with a good
  trajectory: the poses may be usable, the intrinsics are not, so it is not tiered.

Users filter on ``tier`` (e.g. ``tier in ("tier1", "tier2")``) or on the raw numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dynpose.domain.annotate.decisions import MIN_REGISTERED
from dynpose.domain.camera import Intrinsics, PoseResult

TIERS = ("tier1", "tier2", "tier3", "tier4", "failed")


@dataclass
class TierSettings:
    """The ``pose_quality`` settings: Table 6's reprojection cut-offs and the plausible focal range."""

    bounds: tuple[float, ...] = (1.00, 1.18, 1.37)  # upper bounds (px, exclusive) of tier1, tier2, tier3
    plausible_focal: tuple[float, float] = (0.25, 5.0)  # focal length / long image side
    # InterPose self-consistency (degrees, camera_poses.select: self_consistency): a video scoring above
    # this is failed; None: not a tier input (docs/annotation.md has its correlation with ATE)
    max_self_consistency: float | None = None


@dataclass
class Quality:
    registered_ratio: float
    reprojection_error: float
    registered: bool  # registered_ratio >= min_registered
    focal_plausible: bool  # focal length within PLAUSIBLE_FOCAL x the long image side
    tier: str  # one of TIERS
    self_consistency: float = float("nan")  # of the kept hypothesis (NaN: not scored)

    def to_dict(self) -> dict:
        return asdict(self)


def reprojection_tier(error: float, bounds: tuple[float, ...] = TierSettings.bounds) -> str:
    """Tier of a mean reprojection error (pixels); NaN or infinite errors are ``failed``."""
    if error is None or not math.isfinite(error):
        return "failed"
    for bound, name in zip(bounds, TIERS):
        if error < bound:
            return name
    return TIERS[len(bounds)]


def focal_plausible(intrinsics: Intrinsics, bounds: tuple[float, float] = TierSettings.plausible_focal) -> bool:
    ratio = intrinsics.fx / max(intrinsics.width, intrinsics.height)
    return bool(bounds[0] <= ratio <= bounds[1])


def assess(result: PoseResult, min_registered: float = MIN_REGISTERED, tiers: TierSettings | None = None) -> Quality:
    tiers = tiers or TierSettings()
    ratio = result.registered_ratio
    ok = ratio >= min_registered
    focal_ok = focal_plausible(result.intrinsics, tiers.plausible_focal)
    consistency = result.extra.get("self_consistency")
    consistency = float("nan") if consistency is None else float(consistency)
    consistent = tiers.max_self_consistency is None or not consistency > tiers.max_self_consistency
    tier = reprojection_tier(result.reprojection_error, tiers.bounds) if ok and focal_ok and consistent else "failed"
    return Quality(ratio, float(result.reprojection_error), ok, focal_ok, tier, consistency)
