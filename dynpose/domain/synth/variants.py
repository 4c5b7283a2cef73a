"""Labelled variants: one generator option per reason a video is unsuitable for dynamic camera
pose estimation. Categories match the real-data labels file (data/labels.csv)."""

from __future__ import annotations

# variant -> (category, suitable, reason written to labels.csv)
VARIANTS: dict[str, tuple[str, int, str]] = {
    "none": ("suitable", 1, "moving camera in a textured static scene with independently moving objects"),
    "tripod": ("static_camera", 0, "tripod shot: the camera does not move; objects move"),
    "static_scene": ("static_scene", 0, "nothing in the scene moves; only the camera moves"),
    "shot_change": ("not_estimable", 0, "edited clip with hard shot changes"),
    "zoom": ("not_estimable", 0, "the focal length changes over time (zoom)"),
    "fisheye": ("not_estimable", 0, "strong fisheye distortion (unified camera model alpha > 1)"),
    "huge_object": ("not_estimable", 0, "a moving object fills more than 80% of the frame"),
    "long_focal": ("not_estimable", 0, "very long focal length with a blurred background"),
    "cartoon": ("not_real", 0, "flat-shaded cartoon rendering, not real footage"),
    "overlay": ("not_real", 0, "post-processed: burnt-in text and logo overlays"),
    "side_by_side": ("not_real", 0, "side-by-side composite of two videos"),
    "low_res": ("quality_ethics", 0, "very low resolution and heavy compression"),
}

UNSUITABLE = [v for v in VARIANTS if v != "none"]
CATEGORIES = sorted({c for c, _, _ in VARIANTS.values()})


def label(variant: str) -> tuple[str, int, str]:
    """(category, suitable, reason) of a variant."""
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}") from None


LOW_RES_SIZES = [(176, 144), (160, 120), (192, 108), (240, 136), (128, 96)]
