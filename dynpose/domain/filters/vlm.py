"""VLM filter (DynPose-100K appendix A.2, the cascade's last stage): a vision-language model asked
about a few frames of the video, through any OpenAI-compatible chat-completions endpoint.

``mode="binary"`` (the paper's filter) asks eight yes/no questions, each a reason to reject; the
score is 1 when none is answered yes, else 0, and every answer is kept as a column. ``mode="score"``
is the paper's baseline prompt: one suitability number 0-10, the score is that number / 10.

The answer is a JSON-schema structured output (``response_format``) parsed strictly: anything
that is not exactly the expected object is ``vlm_bad_answer`` with a null score, never a guess.

Endpoint, model and key: ``base_url`` (empty: ``$OPENAI_BASE_URL``), ``model``, and the key read
from the environment variable named by ``api_key_env`` (never logged, never in a message). One
line of setup per server (then set ``model`` to the name the server serves):

- OpenAI:     ``OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-...``, model ``gpt-4o-mini``
- vLLM:       ``vllm serve Qwen/Qwen2.5-VL-7B-Instruct`` then ``OPENAI_BASE_URL=http://host:8000/v1``
- llama.cpp:  ``llama-server -m model.gguf --mmproj mmproj.gguf`` then ``OPENAI_BASE_URL=http://host:8080/v1``
- Ollama:     ``ollama pull qwen2.5vl`` then ``OPENAI_BASE_URL=http://host:11434/v1``

No endpoint or no model: the filter is ``skipped`` (score null) and the cascade decides without it.

Faults: the official ``openai`` client retries 429 / 5xx / timeouts / connection errors itself
(``max_retries``, exponential backoff with jitter, honouring ``Retry-After``); what still fails is
``vlm_error`` with the error's class name. Throughput: at most ``concurrency`` requests in flight
and ``requests_per_minute`` request starts per endpoint in this process (module-level, thread-safe;
the client's own retries are not counted again).

Cache: ``run(..., cache=...)`` takes any object with ``get(key) -> dict | None`` and
``put(key, dict)`` (the lake's :class:`dynpose.storage.vlm_cache.VlmCache`); the key is
:func:`cache_key` over the video id, the sha256 of the sampled JPEG bytes, the mode and prompt
version, and the model. A cached answer sends no request (``cached`` true; its tokens and cost are
those of the original request, so the spend of a run is the sum over rows that are not cached).
Only parsed answers are cached; a failed video is asked again on the next run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import openai
import pyarrow as pa

from dynpose.domain.filters.base import FilterFrames, FilterResult
from dynpose.domain.status import Status

NAME = "filter_vlm"


@dataclass
class VlmConfig:
    base_url: str = ""  # empty: $OPENAI_BASE_URL
    model: str = ""  # empty: the stage is skipped
    api_key_env: str = "OPENAI_API_KEY"  # the name of the variable holding the key, never the key
    frames: int = 4  # evenly sampled frames sent as images
    frame_side: int = 512  # long side of each image (frames are only shrunk, never enlarged)
    timeout_s: float = 60
    max_retries: int = 4  # the openai client's own retries (429, 5xx, timeouts)
    concurrency: int = 4  # requests in flight per endpoint in this process
    requests_per_minute: int = 60  # request starts per endpoint in this process (0: no limit)
    prompt_version: str = "1"  # bump when the prompt changes: cached answers are then asked again
    price_in_per_mtok: float = 0.0  # USD per million input tokens
    price_out_per_mtok: float = 0.0  # USD per million output tokens
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
    out = []
    for i in idx:
        rgb = frames.frames[i]
        scale = side / max(rgb.shape[:2])
        if scale < 1:
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("JPEG encoding failed")
        out.append(buf.tobytes())
    return out


def cache_key(video_id: str, frames_sha: str, prompt_version: str, model: str) -> str:
    return hashlib.sha256("\0".join([video_id, frames_sha, prompt_version, model]).encode()).hexdigest()


# -- strict parsing ------------------------------------------------------------------------------
def parse_answer(content, mode: str) -> dict | None:
    """The answer as {column: value}, or None when it is not exactly the schema's object."""
    if not isinstance(content, str):
        return None
    try:
        obj = json.loads(content)
    except ValueError:
        return None
    if not isinstance(obj, dict):
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


# -- throughput ----------------------------------------------------------------------------------
class RateLimiter:
    """At most ``per_minute`` acquisitions a minute, spaced evenly; thread-safe."""

    def __init__(self, per_minute: int):
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


_gates: dict[tuple[str, int, int], tuple[RateLimiter, threading.Semaphore]] = {}
_gates_lock = threading.Lock()


def _gate(base_url: str, cfg: VlmConfig) -> tuple[RateLimiter, threading.Semaphore]:
    key = (base_url, cfg.requests_per_minute, cfg.concurrency)
    with _gates_lock:
        if key not in _gates:
            _gates[key] = (RateLimiter(cfg.requests_per_minute), threading.Semaphore(max(1, cfg.concurrency)))
        return _gates[key]


@lru_cache(maxsize=8)
def _client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


# -- the filter ----------------------------------------------------------------------------------
def run(frames: FilterFrames, cfg: VlmConfig | None = None, video: dict | None = None, cache=None) -> FilterResult:
    cfg = cfg or VlmConfig()
    video = video or {}
    if cfg.mode not in ("binary", "score"):
        raise ValueError(f"unknown mode {cfg.mode!r}; expected 'binary' or 'score'")
    cols: dict = {name: None for name, _ in COLUMNS}
    cols.update(model=cfg.model or None, prompt_version=cfg.prompt_version, vlm_mode=cfg.mode, cached=False)
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL", "")
    if not base_url or not cfg.model:
        return FilterResult(None, "skipped", "no VLM endpoint configured", cols)
    if not len(frames):
        return FilterResult(None, Status.too_few_frames, "no frames", cols)

    jpegs = sample_jpegs(frames, cfg.frames, cfg.frame_side)
    frames_sha = hashlib.sha256(b"".join(jpegs)).hexdigest()
    key = cache_key(str(video.get("video_id", "")), frames_sha, f"{cfg.mode}-{cfg.prompt_version}", cfg.model)
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        answer = parse_answer(hit.get("content"), cfg.mode)
        if answer is not None:
            cols.update(answer, tokens_in=hit.get("tokens_in"), tokens_out=hit.get("tokens_out"), cached=True)
            cols["cost_usd"] = hit.get("cost_usd")
            return FilterResult(score_of(answer, cfg.mode), Status.ok, "cached answer", cols)

    images = [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(j).decode()}}
        for j in jpegs
    ]
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [{"type": "text", "text": prompt_text(cfg, video)}, *images]},
    ]
    schema = SCORE_SCHEMA if cfg.mode == "score" else BINARY_SCHEMA
    limiter, in_flight = _gate(base_url, cfg)
    try:
        client = _client(base_url, os.environ.get(cfg.api_key_env) or "none", cfg.timeout_s, cfg.max_retries)
        with in_flight:
            limiter.acquire()
            response = client.chat.completions.create(
                model=cfg.model,
                messages=messages,
                response_format={"type": "json_schema", "json_schema": schema},
                temperature=0,
            )
    except openai.OpenAIError as e:  # the client's retries are spent; the class name only, no key
        code = getattr(e, "status_code", None)
        return FilterResult(None, "vlm_error", type(e).__name__ + (f" (HTTP {code})" if code else ""), cols)

    usage = getattr(response, "usage", None)
    tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
    cost = (tokens_in * cfg.price_in_per_mtok + tokens_out * cfg.price_out_per_mtok) / 1e6
    cols.update(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost)
    content = response.choices[0].message.content if response.choices else None
    answer = parse_answer(content, cfg.mode)
    if answer is None:
        shown = content[:80] if isinstance(content, str) else repr(content)
        return FilterResult(None, "vlm_bad_answer", f"not the schema's object: {shown!r}", cols)
    cols.update(answer)
    if cache is not None:
        record = {"content": content, "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost}
        cache.put(key, {**record, "model": cfg.model, "prompt_version": cfg.prompt_version, "mode": cfg.mode})
    return FilterResult(score_of(answer, cfg.mode), Status.ok, None, cols)
