"""The content filter (Hands23 substitute): overlays, cartoons, composites and low resolution score
clearly below a suitable clip; bad input gives no score and a status, never an exception."""

from __future__ import annotations

import numpy as np
import pytest

from dynpose.domain.filters import content
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.synth import ClipSpec, render_clip

pytestmark = pytest.mark.timeout(120)


def _frames(clip) -> tuple[FilterFrames, dict]:
    f = clip.frames
    ff = FilterFrames(f, np.asarray(clip.timestamps, np.float64), float(clip.spec.fps), clip.width, clip.height)
    return ff, {"width": int(clip.width), "height": int(clip.height), "fps": 12.0}  # a 12 fps source sampled at 6 fps


@pytest.fixture(scope="module")
def clips() -> dict:
    # One small street scene (built once, cached by the renderer), a slow pan, 6 fps like the filter frames.
    base = dict(
        seed=11,
        layout="street",
        trajectory="pan_translate",
        seconds=2.0,
        width=320,
        height=240,
        fps=6.0,
        texture_scale=0.4,
    )
    variants = ("none", "overlay", "cartoon", "side_by_side", "low_res")
    return {v: _frames(render_clip(ClipSpec(variant=v, **base))) for v in variants}


@pytest.fixture(scope="module")
def results(clips) -> dict:
    return {v: content.run(ff, content.ContentConfig(), video) for v, (ff, video) in clips.items()}


def test_suitable_clip_passes(results):
    r = results["none"]
    assert r.status == "ok" and r.score is not None
    assert r.score > 0.85, r.columns
    assert r.columns["acceptable_score"] > 0.5


@pytest.mark.parametrize(
    "variant,group",
    [
        ("overlay", "overlay_score"),
        ("cartoon", "synthetic_score"),
        ("side_by_side", "composite_score"),
        ("low_res", "format_score"),
    ],
)
def test_target_variant_scores_lower(results, variant, group):
    good, bad = results["none"], results[variant]
    assert bad.status == "ok"
    assert bad.score < good.score - 0.1, (variant, bad.score, good.score)
    assert bad.columns[group] < 0.2, (variant, group, bad.columns)
    assert good.columns[group] > 0.6, (variant, group, good.columns)


def test_overlay_text_is_persistent_and_scene_text_is_not(results):
    assert results["overlay"].columns["text_persistent"] > 0.01
    assert results["none"].columns["text_persistent"] < 0.005


def test_columns_are_exactly_the_declared_ones(results):
    names = [n for n, _ in content.COLUMNS]
    assert len(names) == len(set(names))
    for r in results.values():
        assert list(r.columns) == names
    for name, typ in content.COLUMNS:
        for r in results.values():
            v = r.columns[name]
            assert v is None or isinstance(v, (int, float)), (name, v)
            if v is not None and typ == content.pa.float64() and name.endswith("_score"):
                assert 0.0 <= v <= 1.0


def test_paper_combination_is_mean_of_acceptable_and_interaction(clips):
    ff, video = clips["cartoon"]
    r = content.run(ff, content.ContentConfig(combine="paper"), video)
    assert r.score == pytest.approx((r.columns["acceptable_score"] + r.columns["interaction_score"]) / 2)
    with pytest.raises(ValueError):
        content.run(ff, content.ContentConfig(combine="nope"), video)


def _ff(frames: np.ndarray) -> FilterFrames:
    n = len(frames)
    return FilterFrames(frames, np.arange(n) / 6.0, 6.0, frames.shape[2] if n else 0, frames.shape[1] if n else 0)


@pytest.mark.parametrize(
    "frames,status",
    [
        (np.zeros((0, 90, 160, 3), np.uint8), "too_few_frames"),
        (np.random.default_rng(0).integers(0, 255, (1, 90, 160, 3), dtype=np.uint8), "too_few_frames"),
        (np.full((8, 90, 160, 3), 128, np.uint8), "uniform_frames"),
        (np.zeros((8, 90, 160, 3), np.uint8), "uniform_frames"),
        (np.random.default_rng(1).integers(0, 255, (8, 12, 16, 3), dtype=np.uint8), "too_small"),
    ],
)
def test_bad_input_gives_no_score_and_a_status(frames, status):
    r = content.run(_ff(frames), content.ContentConfig(), {"width": None, "height": None, "fps": None})
    assert r.score is None
    assert r.status == status
    assert list(r.columns) == [n for n, _ in content.COLUMNS]


def test_missing_catalog_fields_do_not_break_it(clips):
    ff, _ = clips["none"]
    r = content.run(ff, content.ContentConfig(), {})
    assert r.status == "ok" and r.score is not None
    assert r.columns["source_fps"] is None  # not in the row: not measured, left out of the format rule
    assert r.columns["source_short_side"] == min(ff.source_width, ff.source_height)


def test_models_load_once_per_process(results):
    pytest.importorskip("rapidocr_onnxruntime")
    pytest.importorskip("mediapipe")
    cfg = content.ContentConfig()
    assert content._text_detector(cfg) is not None
    assert content._text_detector(cfg) is content._text_detector(content.ContentConfig())
    assert content._mediapipe("face", cfg) is content._mediapipe("face", content.ContentConfig())
    assert content._mediapipe("selfie", cfg) is not None
