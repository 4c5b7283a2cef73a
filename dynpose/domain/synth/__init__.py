"""Synthetic dynamic scenes with exact ground truth (camera poses, intrinsics, depth, dynamic
masks, static correspondences) and labelled unsuitable variants for filter benchmarks.

    from dynpose.domain.synth import ClipSpec, render_clip, write_clip, generate_suite
    clip = render_clip(ClipSpec(seed=3, layout="street", trajectory="orbit", seconds=4))
    entry = write_clip(clip, "out/", "street_orbit_3")

See docs/synthetic.md for the file formats and the suites.
"""

from dynpose.domain.synth.clip import ClipSpec, RenderedClip, render_clip
from dynpose.domain.synth.io import write_clip
from dynpose.domain.synth.suites import SUITES, generate_suite, suite_specs
from dynpose.domain.synth.variants import CATEGORIES, VARIANTS

__all__ = [
    "ClipSpec",
    "RenderedClip",
    "render_clip",
    "write_clip",
    "generate_suite",
    "suite_specs",
    "SUITES",
    "VARIANTS",
    "CATEGORIES",
]
