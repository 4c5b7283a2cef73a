"""Raw products: the clip catalog (one probe per video) and the sampled-frame index."""

from __future__ import annotations

import functools

import pyarrow as pa

from dynpose.domain import catalog
from dynpose.graph.steps.base import Product, StepContext


def compute_clip_catalog(ctx: StepContext) -> pa.Table:
    rows = ctx.executor.map(functools.partial(catalog.catalog_row, settings=ctx.settings), ctx.videos(), ctx.progress)
    return catalog.catalog_table(rows)


def _frame_rows(video: dict, settings) -> list[dict]:
    return catalog.frame_rows(video["video_id"], video["source_uri"], settings)


def compute_sampled_frames(ctx: StepContext) -> pa.Table:
    per_video = ctx.executor.map(functools.partial(_frame_rows, settings=ctx.settings), ctx.ok_videos(), ctx.progress)
    return pa.Table.from_pylist([r for rows in per_video for r in rows], schema=catalog.FRAMES_SCHEMA)


PRODUCTS = [
    Product(
        "clip_catalog",
        "1",
        (),
        compute_clip_catalog,
        "One row per video: source, container, codec, size, fps, frames, duration, rotation, audio, caption, "
        "labels, status.",
        "raw",
        schema=catalog.CATALOG_SCHEMA,
        checks=("unique_video_ids",),
    ),
    Product(
        "sampled_frames",
        "1",
        ("clip_catalog",),
        compute_sampled_frames,
        # An index (times, no pixels), so cheap: it covers every ok video, kept by the filters or not.
        "The frames annotation uses (12 fps by default) with their source indices and timestamps.",
        "annotations",
        schema=catalog.FRAMES_SCHEMA,
    ),
]
