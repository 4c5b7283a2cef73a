"""What every filter promises the graph, checked on each of them: bad input is a null score with a
named status and a message, never an exception, and the columns are exactly the declared ones."""

from __future__ import annotations

import numpy as np
import pytest

from dynpose.domain.filters import filter_module
from dynpose.domain.filters.base import FilterFrames, result_schema
from dynpose.domain.filters.cascade import FILTERS
from dynpose.graph.settings import Settings

BAD = {
    "one frame": np.zeros((1, 90, 160, 3), np.uint8),
    "no frame": np.zeros((0, 90, 160, 3), np.uint8),
    "uniform gray": np.full((12, 90, 160, 3), 128, np.uint8),
    "8x10 pixels": np.random.default_rng(0).integers(0, 255, (12, 8, 10, 3), dtype=np.uint8),
}
# The status each filter names for each bad input (its own words where it measures something else).
STATUS = {
    "content": ("too_few_frames", "too_few_frames", "uniform_frames", "too_small"),
    "flow": ("too_few_frames", "too_few_frames", "no_texture", "frames_too_small"),
    "focal": ("too_few_frames", "too_few_frames", "no_texture", "frames_too_small"),
    "distortion": ("too_few_lines", "too_few_frames", "too_few_lines", "frames_too_small"),
    "tracking": ("too_few_frames", "too_few_frames", "no_texture", "frames_too_small"),
    "masking": ("too_few_frames", "too_few_frames", "no_texture", "frames_too_small"),
    "vlm": ("skipped",) * 4,  # the default settings name no model (asked with frames: tests/test_filter_vlm.py)
}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_null_score_with_a_status(name, case):
    module, frames = filter_module(name), BAD[case]
    res = module.run(
        FilterFrames(frames, np.arange(len(frames)) / 6.0, 6.0, 160, 90),
        Settings().section(module.NAME),
        {"video_id": "x"},
    )
    assert res.score is None and res.status == STATUS[name][list(BAD).index(case)] and res.message
    assert list(res.columns) == [c for c, _ in module.COLUMNS]


@pytest.mark.parametrize("name", FILTERS)
def test_the_declared_columns_make_the_product_schema(name):
    module = filter_module(name)
    schema = result_schema(module.COLUMNS)
    assert module.NAME == f"filter_{name}" and schema.names[:5] == ["video_id", "score", "status", "message", "seconds"]
    assert len(set(schema.names)) == len(schema.names)  # no column declared twice or clashing with the shared ones
