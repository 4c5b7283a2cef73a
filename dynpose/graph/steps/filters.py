"""Filter products: one table per filter, then the cascade's decision per video.

Every catalogued video gets a row in every filter table: a score, or a null score with the status
that says why (the catalog's failure, ``not_reached`` when the cascade rejected it at an earlier
stage, or the filter's own reason). Frames are decoded once per video at the filter rate and size
(``filter_frames`` settings) and shared through a local cache; each video's filter runs in its own
child process, so a native crash is that video's ``failed``, not the shard's.

The VLM filter is the exception in one way: its child only decodes and samples the frames; the
request runs in this process, on ``vlm.concurrency`` threads, so the endpoint's limits hold for the
whole shard and answers go to (and come from) the lake's response cache.
"""

from __future__ import annotations

import functools
import time

import pyarrow as pa

from dynpose.domain.catalog import open_source
from dynpose.domain.filters import filter_module, vlm
from dynpose.domain.filters.base import FilterFrames, FilterResult, result_schema
from dynpose.domain.filters.cascade import FILTERS, STAGES, decide, reaches
from dynpose.domain.status import Status
from dynpose.domain.video import VideoError, sample_frames
from dynpose.graph.executors import InProcessExecutor
from dynpose.graph.isolation import run_measured
from dynpose.graph.steps.base import Product, StepContext
from dynpose.storage.frame_cache import FrameCache
from dynpose.storage.vlm_cache import VlmCache

DECISIONS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("score", pa.float64()),
        ("kept", pa.bool_()),
        ("stage_left", pa.string()),
        ("reason", pa.string()),
        *[(f"{name}_score", pa.float64()) for name in FILTERS],
    ]
)


def filter_frames(video: dict, frames) -> FilterFrames:
    """The video's frames at the filter rate and size, from the local cache or decoded once."""
    key = f"{video['video_id']}-{frames.fps:g}fps-{frames.max_side}px"
    cache = FrameCache(frames.cache_dir or None, frames.cache_mib * 1024**2)
    hit = cache.get(key)
    if hit is not None:
        return FilterFrames(
            hit["frames"], hit["timestamps"], frames.fps, int(hit["source_size"][0]), int(hit["source_size"][1])
        )
    with open_source(video["source_uri"]) as fh:
        sampled = sample_frames(fh, fps=frames.fps, max_side=frames.max_side)
    out = FilterFrames.from_sampled(
        sampled, video.get("width") or sampled.frames.shape[2], video.get("height") or sampled.frames.shape[1]
    )
    cache.put(
        key, {"frames": out.frames, "timestamps": out.timestamps, "source_size": [out.source_width, out.source_height]}
    )
    return out


def run_filter(name: str, video: dict, cfg, frames) -> FilterResult:
    """Decode (or read cached) frames and run one filter on one video; bad input is a status."""
    try:
        ff = filter_frames(video, frames)
    except VideoError as exc:
        return FilterResult(None, exc.status, exc.message)
    return filter_module(name).run(ff, cfg, video)


def _row(video_id: str, result: FilterResult, seconds: float, columns: list[str]) -> dict:
    extra = set(result.columns) - set(columns)
    if extra:  # a filter returning an undeclared column is a bug in that filter
        raise ValueError(f"undeclared column(s) {sorted(extra)}")
    return {
        "video_id": video_id,
        "score": result.score,
        "status": str(result.status),
        "message": result.message,
        "seconds": seconds,
        **{c: result.columns.get(c) for c in columns},
    }


def _not_run(job: dict, columns: list[str]) -> dict | None:
    """The row of a video this filter does not run on (a catalog failure, or not reached), else None."""
    video = job["video"]
    if video["status"] != Status.ok:
        return _row(video["video_id"], FilterResult(None, video["status"], video.get("message")), 0.0, columns)
    if not job["reached"]:
        return _row(video["video_id"], FilterResult(None, Status.not_reached, job["why"]), 0.0, columns)
    return None


def filter_for_video(job: dict, name: str, cfg, frames) -> dict:
    """One video's row of one filter table: computed in a child, or why not."""
    video, columns = job["video"], [c for c, _ in filter_module(name).COLUMNS]
    row = _not_run(job, columns)
    if row is not None:
        return row
    t0 = time.perf_counter()
    status, value, _seconds, _peak = run_measured(run_filter, name, video, cfg, frames)
    seconds = time.perf_counter() - t0
    if status != "ok":
        value = FilterResult(None, Status.failed, value)
    return _row(video["video_id"], value, seconds, columns)


def vlm_images(video: dict, cfg: vlm.VlmConfig, frames) -> list[bytes] | FilterResult:
    """The JPEGs the VLM filter sends for one video, or why there are none (runs in a child)."""
    try:
        ff = filter_frames(video, frames)
    except VideoError as exc:
        return FilterResult(None, exc.status, exc.message)
    if not len(ff):
        return FilterResult(None, Status.too_few_frames, "no frames")
    return vlm.sample_jpegs(ff, cfg.frames, cfg.frame_side)


def vlm_for_video(job: dict, cfg: vlm.VlmConfig, frames, endpoint, cache) -> dict:
    """One video's row of filter_vlm: images from a child, the answer from the cache or the endpoint."""
    video, columns = job["video"], [c for c, _ in vlm.COLUMNS]
    row = _not_run(job, columns)
    if row is not None:
        return row
    if not endpoint.configured:
        message = "no VLM endpoint configured (set vlm.model, and vlm.base_url or $OPENAI_BASE_URL)"
        return _row(
            video["video_id"],
            FilterResult(None, Status.skipped, message, vlm.empty_columns(cfg, endpoint)),
            0.0,
            columns,
        )
    t0 = time.perf_counter()
    status, value, _seconds, _peak = run_measured(vlm_images, video, cfg, frames)
    if status != "ok":
        value = FilterResult(None, Status.failed, value)
    elif not isinstance(value, FilterResult):
        value = vlm.ask_about(value, cfg, video, endpoint, cache)
    return _row(video["video_id"], value, time.perf_counter() - t0, columns)


def _scores(ctx: StepContext, names, column: str = "score") -> dict[str, dict]:
    """{video_id: {filter: score}} (or another column) from the filter tables of this shard."""
    out: dict[str, dict] = {}
    for name in names:
        for r in ctx.input(f"filter_{name}").select(["video_id", column]).to_pylist():
            out.setdefault(r["video_id"], {})[name] = r[column]
    return out


def _stage(name: str) -> int:
    return next(i for i, stage in enumerate(STAGES) if name in stage)


def compute_filter(ctx: StepContext, name: str) -> pa.Table:
    stage = _stage(name)
    earlier = [n for s in STAGES[:stage] for n in s]
    cascade = ctx.all_settings.filter_decisions
    scores = _scores(ctx, earlier) if earlier else {}
    jobs = []
    for video in ctx.input("clip_catalog").to_pylist():
        s = scores.get(video["video_id"], {})
        reached = cascade.mode == "all" or reaches(s, stage, cascade)
        jobs.append({"video": video, "reached": reached, "why": None if reached else decide(s, cascade).reason})
    frames = ctx.all_settings.filter_frames
    if name == "vlm":  # requests from this process, within the endpoint's limits (module docstring)
        endpoint = ctx.all_settings.vlm
        fn = functools.partial(
            vlm_for_video, cfg=ctx.settings, frames=frames, endpoint=endpoint, cache=VlmCache(ctx.lake)
        )
        executor = InProcessExecutor(max(1, endpoint.concurrency))
    else:
        fn = functools.partial(filter_for_video, name=name, cfg=ctx.settings, frames=frames)
        executor = ctx.executor
    rows = executor.map(fn, jobs, ctx.progress)
    return pa.Table.from_pylist(rows, schema=result_schema(filter_module(name).COLUMNS))


def compute_filter_decisions(ctx: StepContext) -> pa.Table:
    scores, statuses = _scores(ctx, FILTERS), _scores(ctx, FILTERS, "status")
    rows = []
    for video in ctx.input("clip_catalog").to_pylist():
        s = scores.get(video["video_id"], {})
        d = decide(s, ctx.settings, video["status"], statuses.get(video["video_id"]))
        rows.append(
            {
                "video_id": video["video_id"],
                "score": d.score,
                "kept": d.kept,
                "stage_left": d.stage_left,
                "reason": d.reason,
                **{f"{n}_score": s.get(n) for n in FILTERS},
            }
        )
    return pa.Table.from_pylist(rows, schema=DECISIONS_SCHEMA)


_DESCRIPTIONS = {
    "content": "Content: text/logo overlays, presenters, cartoons/games/screens/composites, quality, resolution "
    "(Hands23 substitute).",
    "flow": "Flow at 6 fps: mean sequential flow, peak vs mean + 4 std, max 1 s window mean.",
    "focal": "Focal at 6 fps (720p px): AnyCam candidate sweep per window; spread, 1 s change, p80 rules.",
    "distortion": "Radial distortion at 6 fps; rejects fisheye-like lenses.",
    "tracking": "Tracking at 3 fps over 30 frames: shot changes (lost tracks, PySceneDetect) and static cameras.",
    "masking": "Dynamic mask area (1 s keyframes, 1 s propagation): rejects videos whose p90 mask covers > 80%.",
    "vlm": "VLM: the paper's eight reasons to reject, asked of a vision-language model about a few frames "
    "(skipped without an endpoint); tokens, cost and cache use per video.",
}


def _filter_product(name: str) -> Product:
    stage = _stage(name)
    deps = ("clip_catalog", *[f"filter_{n}" for s in STAGES[:stage] for n in s])
    module = filter_module(name)
    return Product(
        module.NAME,
        "1",
        deps,
        functools.partial(compute_filter, name=name),
        _DESCRIPTIONS[name],
        "filters",
        uses=("filter_frames", *(("filter_decisions",) if stage else ()), *(("vlm",) if name == "vlm" else ())),
        schema=result_schema(module.COLUMNS),
        checks=("unique_video_ids",),
        retry_statuses=(Status.vlm_error, Status.vlm_bad_answer) if name == "vlm" else (),
    )


PRODUCTS = [_filter_product(name) for name in FILTERS] + [
    Product(
        "filter_decisions",
        "2",
        ("clip_catalog", *[f"filter_{n}" for n in FILTERS]),
        compute_filter_decisions,
        "The cascade per video: mean score, kept, the stage it left at and why; every filter's score beside it.",
        "filters",
        schema=DECISIONS_SCHEMA,
        checks=("unique_video_ids",),
    ),
]
