"""One way to ask a vision-language model a question about images: any OpenAI-compatible
chat-completions endpoint, a JSON-schema answer parsed strictly, a cache, limits and a price.

The filter cascade's last stage (``dynpose.domain.filters.vlm``) and the DynaPo mask component
(``dynpose.domain.annotate.masks_vlm``) both ask through :func:`ask`; the endpoint is one settings
section, ``vlm`` (:class:`VlmEndpoint`).

Endpoint, model and key: ``base_url`` (default: ``$OPENAI_BASE_URL`` when the settings are
loaded), ``model``, and the key read from the environment variable named by ``api_key_env``
(never logged, never in a message or a row). One line of setup per server (then set ``vlm.model``
to the name the server serves):

- OpenAI:     ``OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-...``, model ``gpt-4o-mini``
- vLLM:       ``vllm serve Qwen/Qwen2.5-VL-7B-Instruct`` then ``OPENAI_BASE_URL=http://host:8000/v1``
- llama.cpp:  ``llama-server -m model.gguf --mmproj mmproj.gguf`` then ``OPENAI_BASE_URL=http://host:8080/v1``
- Ollama:     ``ollama pull qwen2.5vl`` then ``OPENAI_BASE_URL=http://host:11434/v1``

No endpoint or no model: nothing is asked (:attr:`VlmEndpoint.configured` is false).

Faults: the official ``openai`` client retries 429 / 5xx / timeouts / connection errors itself
(``max_retries``, exponential backoff with jitter, honouring ``Retry-After``); what still fails is
``vlm_error`` with the error's class name; an answer that is not exactly the schema's object is
``vlm_bad_answer``. Throughput: at most ``concurrency`` requests in flight and
``requests_per_minute`` request starts per endpoint in this process (thread-safe; the client's own
retries are not counted again). The graph asks from the shard's process, so with several shards
running at once each has these limits.

Cache: any object with ``get(key) -> dict | None`` and ``put(key, dict)`` (the lake's
:class:`dynpose.storage.vlm_cache.VlmCache`). A cached answer sends no request; its tokens and cost
are those of the original request, so a run's spend is the sum over rows that are not cached.
Only parsed answers are cached: a failed video is asked again on the next run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np
import openai

from dynpose.domain.status import Status

# USD per million tokens (input, output), as OpenAI listed them in 2025; models not listed
# (local servers) cost 0. Check your provider's prices and set your own in ``vlm.prices``.
DEFAULT_PRICES: dict[str, list[float]] = {
    "gpt-4o": [2.50, 10.00],
    "gpt-4o-mini": [0.15, 0.60],
    "gpt-4.1": [2.00, 8.00],
    "gpt-4.1-mini": [0.40, 1.60],
    "gpt-4.1-nano": [0.10, 0.40],
}


@dataclass
class VlmEndpoint:
    """The ``vlm`` settings section: where and how to ask."""

    base_url: str = field(default_factory=lambda: os.environ.get("OPENAI_BASE_URL", ""))
    model: str = ""  # empty: no VLM; the filter is skipped and masks have no vlm component
    api_key_env: str = "OPENAI_API_KEY"  # the name of the variable holding the key, never the key
    timeout_s: float = 60
    max_retries: int = 4  # the openai client's own retries (429, 5xx, timeouts)
    concurrency: int = 4  # requests in flight per endpoint in this process
    requests_per_minute: int = 60  # request starts per endpoint in this process (0: no limit)
    image_detail: str = "low"  # OpenAI's image detail: low is a fixed, small token count per image
    prices: dict[str, list[float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        price_in, price_out = self.prices.get(self.model, (0.0, 0.0))
        return (tokens_in * price_in + tokens_out * price_out) / 1e6


@dataclass
class Reply:
    status: str  # ok | vlm_error | vlm_bad_answer
    answer: object = None  # what ``parse`` made of the content; None unless ok
    message: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    cached: bool = False


def encode_jpeg(rgb: np.ndarray, side: int) -> bytes:
    """An RGB frame as JPEG bytes, long side at most ``side`` (only shrunk, never enlarged)."""
    scale = side / max(rgb.shape[:2])
    if scale < 1:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def json_object(content) -> dict | None:
    """The answer's content as a JSON object, or None (not a string, not JSON, not an object):
    the first step of every strict parser."""
    if not isinstance(content, str):
        return None
    try:
        obj = json.loads(content)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def cache_key(video_id: str, jpegs: list[bytes], prompt_version: str, model: str) -> str:
    """The cache key: video id, the sha256 of the images sent, the prompt's version, the model."""
    frames_sha = hashlib.sha256(b"".join(jpegs)).hexdigest()
    return hashlib.sha256("\0".join([video_id, frames_sha, prompt_version, model]).encode()).hexdigest()


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


def _gate(endpoint: VlmEndpoint) -> tuple[RateLimiter, threading.Semaphore]:
    key = (endpoint.base_url, endpoint.requests_per_minute, endpoint.concurrency)
    with _gates_lock:
        if key not in _gates:
            _gates[key] = (
                RateLimiter(endpoint.requests_per_minute),
                threading.Semaphore(max(1, endpoint.concurrency)),
            )
        return _gates[key]


@lru_cache(maxsize=8)
def _client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


def ask(
    endpoint: VlmEndpoint,
    system: str,
    text: str,
    jpegs: list[bytes],
    schema: dict,
    parse: Callable[[object], object | None],
    key: str,
    cache=None,
) -> Reply:
    """Ask once (or answer from ``cache``): ``text`` and the images, a ``schema`` structured answer
    that ``parse`` turns into a value or None (then ``vlm_bad_answer``)."""
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        answer = parse(hit.get("content"))
        if answer is not None:
            tokens = hit.get("tokens_in"), hit.get("tokens_out")
            return Reply(Status.ok, answer, "cached answer", *tokens, hit.get("cost_usd"), cached=True)
    images = [
        {
            "type": "image_url",
            "image_url": {
                "url": "data:image/jpeg;base64," + base64.b64encode(j).decode(),
                "detail": endpoint.image_detail,
            },
        }
        for j in jpegs
    ]
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "text", "text": text}, *images]},
    ]
    limiter, in_flight = _gate(endpoint)
    try:
        client = _client(
            endpoint.base_url, os.environ.get(endpoint.api_key_env) or "none", endpoint.timeout_s, endpoint.max_retries
        )
        with in_flight:
            limiter.acquire()
            response = client.chat.completions.create(
                model=endpoint.model,
                messages=messages,
                response_format={"type": "json_schema", "json_schema": schema},
                temperature=0,
            )
    except openai.OpenAIError as e:  # the client's retries are spent; the class name only, no key
        code = getattr(e, "status_code", None)
        return Reply(Status.vlm_error, message=type(e).__name__ + (f" (HTTP {code})" if code else ""))

    usage = getattr(response, "usage", None)
    tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
    cost = endpoint.cost(tokens_in, tokens_out)
    content = response.choices[0].message.content if response.choices else None
    answer = parse(content)
    if answer is None:
        shown = content[:80] if isinstance(content, str) else repr(content)
        return Reply(Status.vlm_bad_answer, None, f"not the schema's object: {shown!r}", tokens_in, tokens_out, cost)
    if cache is not None:
        cache.put(
            key,
            {
                "content": content,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost_usd": cost,
                "model": endpoint.model,
            },
        )
    return Reply(Status.ok, answer, None, tokens_in, tokens_out, cost)
