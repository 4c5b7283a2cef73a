"""Every filter and the cascade's decision on one video file, without the lake or Dagster
(``dynpose filter VIDEO``), as ``dynpose annotate`` is for annotation."""

from __future__ import annotations

import time

from dynpose.domain.filters import filter_module
from dynpose.domain.filters.base import FilterFrames, FilterFrameSettings, FilterResult
from dynpose.domain.filters.cascade import FILTERS, CascadeSettings, decide
from dynpose.domain.status import Status
from dynpose.domain.video import VideoError, probe, sample_frames
from dynpose.domain.vlm_client import VlmEndpoint


def filter_video(
    path: str, frames: FilterFrameSettings, configs: dict, cascade: CascadeSettings, endpoint: VlmEndpoint | None = None
) -> dict:
    """{video, status, decode_s, filters: {name: score, status, message, seconds, columns}, decision}.

    Every filter runs (no gating), so each score is there to read; the decision is the staged one.
    ``configs`` maps a filter name (content, flow, ...) to its settings; the VLM filter asks
    ``endpoint`` (skipped when it is None or not configured), without a cache.
    """
    out: dict = {"video": str(path), "status": Status.ok, "message": None, "filters": {}}
    t0 = time.perf_counter()
    try:
        info = probe(str(path))
        sampled = sample_frames(str(path), fps=frames.fps, max_side=frames.max_side)
    except VideoError as exc:
        results = {name: (FilterResult(None, exc.status, exc.message), 0.0) for name in FILTERS}
        out.update(status=exc.status, message=exc.message)
        video = {"source_uri": str(path)}
    else:
        out["decode_s"] = time.perf_counter() - t0
        ff = FilterFrames.from_sampled(sampled, info.width, info.height)
        video = {
            "source_uri": str(path),
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "frame_count": info.frame_count,
            "duration_s": info.duration,
            "rotation": info.rotation,
            "has_audio": info.has_audio,
            "codec": info.codec,
            "container": info.container,
            "caption": None,
        }
        results = {}
        for name in FILTERS:
            t1 = time.perf_counter()
            extra = {"endpoint": endpoint or VlmEndpoint(model="")} if name == "vlm" else {}
            results[name] = (filter_module(name).run(ff, configs[name], video, **extra), time.perf_counter() - t1)
    for name, (res, seconds) in results.items():
        out["filters"][name] = {
            "score": res.score,
            "status": str(res.status),
            "message": res.message,
            "seconds": seconds,
            "columns": res.columns,
        }
    scores = {n: r.score for n, (r, _) in results.items()}
    d = decide(scores, cascade, out["status"], {n: str(r.status) for n, (r, _) in results.items()})
    out["decision"] = {"score": d.score, "kept": d.kept, "stage_left": d.stage_left, "reason": d.reason}
    return out
