"""VLM filter (DynPose-100K appendix A.2, the cascade's last stage): a vision-language model asked
about a few frames of the video (:mod:`dynpose.domain.vlm_client`: endpoint, faults, limits, cache).

``mode="binary"`` (the paper's filter) asks eight yes/no questions, each a reason to reject; the
score is 1 when none is answered yes, else 0, and every answer is kept as a column. ``mode="score"``
is the paper's baseline prompt: one suitability number 0-10, the score is that number / 10.

The answer is a JSON-schema structured output (``response_format``) parsed strictly: anything
that is not exactly the expected object is ``vlm_bad_answer`` with a null score, never a guess.
No endpoint or no model: the filter is ``skipped`` (score null) and the cascade decides without it.

The cache key (:func:`dynpose.domain.vlm_client.cache_key`) covers the video id, the sampled JPEG
bytes, the mode and prompt version, and the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dynpose.domain.filters.base import FilterFrames, FilterResult
from dynpose.domain.status import Status
from dynpose.domain.vlm_client import VlmEndpoint, ask, cache_key, encode_jpeg, json_object

NAME = "filter_vlm"


@dataclass
class VlmConfig:
    """The ``filter_vlm`` settings: what to ask (where to ask is the ``vlm`` section)."""

    frames: int = 4  # evenly sampled frames sent as images
    frame_side: int = 512  # long side of each image (frames are only shrunk, never enlarged)
    prompt_version: str = "1"  # bump when the prompt changes: cached answers are then asked again
    mode: str = "binary"  # binary: the eight questions; score: one suitability number 0-10


# The paper's questions, each a reason to reject: (column, question).
QUESTIONS: tuple[tuple[str, str], ...] = (
    (
        "q_moving_vehicle",
        "Is the frame of reference ambiguous, e.g. filmed from inside a moving vehicle, so that "
        "both the camera and a large part of the view move together?",
    ),
    ("q_background_unmatchable", "Is the background too blurred or too occluded to be matched across frames?"),
    ("q_distorted", "Are the frames distorted (e.g. fisheye, warped, heavily stabilised or stretched)?"),
    ("q_long_focal", "Was the video filmed with a very long focal length (telephoto, strongly zoomed in)?"),
    ("q_static_scene", "Is the scene static, with nothing in it moving?"),
    ("q_synthetic", "Is it a cartoon, an animation, a video game or a screen recording?"),
    (
        "q_post_processed",
        "Is the video post-processed: large overlaid text, logos, side-by-side or picture-in-picture?",
    ),
    ("q_children", "Are children present?"),
)
ANSWERS = tuple(name for name, _ in QUESTIONS)

COLUMNS: list[tuple[str, pa.DataType]] = [
    *[(name, pa.bool_()) for name in ANSWERS],
    ("suitability", pa.float64()),  # score mode: the model's number 0-10
    ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()),
    ("cost_usd", pa.float64()),
    ("cached", pa.bool_()),
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("vlm_mode", pa.string()),
]

SYSTEM = (
    "You judge whether a video suits dynamic camera pose estimation: a real, unedited video of a "
    "moving camera in a scene with moving objects, whose static background can be matched across "
    "frames. You see a few frames sampled evenly from the video. Answer only with the JSON object "
    "the schema asks for."
)

BINARY_SCHEMA = {
    "name": "dynpose_vlm_questions",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {name: {"type": "boolean", "description": q} for name, q in QUESTIONS},
        "required": list(ANSWERS),
        "additionalProperties": False,
    },
}
SCORE_SCHEMA = {
    "name": "dynpose_vlm_score",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"suitability": {"type": "number", "minimum": 0, "maximum": 10}},
        "required": ["suitability"],
        "additionalProperties": False,
    },
}


def prompt_text(cfg: VlmConfig, video: dict) -> str:
    if cfg.mode == "score":
        text = (
            "On a scale from 0 (unusable) to 10 (ideal), how suitable is this video for dynamic camera "
            'pose estimation? Answer {"suitability": <number>}.'
        )
    else:
        lines = [f"- {name}: {q}" for name, q in QUESTIONS]
        text = "Answer each question true (yes) or false (no):\n" + "\n".join(lines)
    if video.get("caption"):
        text += f"\n\nThe video's caption: {video['caption']}"
    if video.get("video_id"):
        text += f"\n\nVideo id: {video['video_id']}"  # for the record (and the test server's oracle)
    return text


# -- frames ------------------------------------------------------------------------------------
def sample_jpegs(frames: FilterFrames, count: int, side: int) -> list[bytes]:
    """``count`` evenly spaced frames, long side at most ``side``, as JPEG bytes."""
    n = len(frames)
    idx = np.unique(np.linspace(0, n - 1, max(1, min(count, n))).round().astype(int)) if n else []
    return [encode_jpeg(frames.frames[i], side) for i in idx]


# -- strict parsing ------------------------------------------------------------------------------
def parse_answer(content, mode: str) -> dict | None:
    """The answer as {column: value}, or None when it is not exactly the schema's object."""
    obj = json_object(content)
    if obj is None:
        return None
    if mode == "score":
        v = obj.get("suitability")
        if set(obj) != {"suitability"} or isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return {"suitability": float(v)} if math.isfinite(v) and 0 <= v <= 10 else None
    if set(obj) != set(ANSWERS) or not all(isinstance(obj[k], bool) for k in ANSWERS):
        return None
    return {k: obj[k] for k in ANSWERS}


def score_of(answer: dict, mode: str) -> float:
    if mode == "score":
        return answer["suitability"] / 10.0
    return 0.0 if any(answer[k] for k in ANSWERS) else 1.0


# -- the filter ----------------------------------------------------------------------------------
def run(
    frames: FilterFrames,
    cfg: VlmConfig | None = None,
    video: dict | None = None,
    endpoint: VlmEndpoint | None = None,
    cache=None,
) -> FilterResult:
    cfg = cfg or VlmConfig()
    video = video or {}
    if cfg.mode not in ("binary", "score"):
        raise ValueError(f"unknown mode {cfg.mode!r}; expected 'binary' or 'score'")
    endpoint = endpoint or VlmEndpoint()
    if not endpoint.configured:
        return FilterResult(None, Status.skipped, "no VLM endpoint configured", empty_columns(cfg, endpoint))
    if not len(frames):
        return FilterResult(None, Status.too_few_frames, "no frames", empty_columns(cfg, endpoint))
    return ask_about(sample_jpegs(frames, cfg.frames, cfg.frame_side), cfg, video, endpoint, cache)


def empty_columns(cfg: VlmConfig, endpoint: VlmEndpoint) -> dict:
    cols: dict = {name: None for name, _ in COLUMNS}
    cols.update(model=endpoint.model or None, prompt_version=cfg.prompt_version, vlm_mode=cfg.mode, cached=False)
    return cols


def ask_about(jpegs: list[bytes], cfg: VlmConfig, video: dict, endpoint: VlmEndpoint, cache=None) -> FilterResult:
    """The filter's answer for one video's sampled JPEGs (:func:`sample_jpegs`)."""
    key = cache_key(str(video.get("video_id", "")), jpegs, f"{cfg.mode}-{cfg.prompt_version}", endpoint.model)
    schema = SCORE_SCHEMA if cfg.mode == "score" else BINARY_SCHEMA
    reply = ask(
        endpoint, SYSTEM, prompt_text(cfg, video), jpegs, schema, lambda c: parse_answer(c, cfg.mode), key, cache
    )
    cols = empty_columns(cfg, endpoint)
    cols.update(tokens_in=reply.tokens_in, tokens_out=reply.tokens_out, cost_usd=reply.cost_usd, cached=reply.cached)
    if reply.status != Status.ok:
        return FilterResult(None, reply.status, reply.message, cols)
    cols.update(reply.answer)
    return FilterResult(score_of(reply.answer, cfg.mode), Status.ok, reply.message, cols)
