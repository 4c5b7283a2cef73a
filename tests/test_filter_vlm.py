"""The VLM filter against the local OpenAI-compatible test server (tests/vlm_server.py): answers,
every fault mode, the cache, the key never shown."""

from __future__ import annotations

import base64
import json
import time

import cv2
import numpy as np
import pytest

from dynpose.domain import vlm_client
from dynpose.domain.filters import vlm
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.vlm_client import VlmEndpoint
from dynpose.evaluation.vlm_server import vlm_server
from dynpose.storage.lake import Lake
from dynpose.storage.vlm_cache import VlmCache

KEY = "sk-test-SECRET-0123456789"
NO = {q: False for q in vlm.ANSWERS}


class DictCache:
    def __init__(self):
        self.data: dict = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value


def frames(n: int = 12, seed: int = 0) -> FilterFrames:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (n, 90, 160, 3), dtype=np.uint8)
    return FilterFrames(rgb, np.arange(n) / 6.0, 6.0, 1280, 720)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("DYNPOSE_TEST_VLM_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def endpoint(server, **kw) -> VlmEndpoint:
    base = dict(
        base_url=server.base_url,
        model="test-vlm",
        api_key_env="DYNPOSE_TEST_VLM_KEY",
        timeout_s=2,
        max_retries=1,
        requests_per_minute=0,
        prices={"test-vlm": [1.0, 4.0]},
    )
    return VlmEndpoint(**{**base, **kw})


def ask(server, ff, video, cache=None, **kw):
    """The filter on ``ff`` against ``server``; ``kw`` sets fields of VlmConfig or VlmEndpoint."""
    own = {k: v for k, v in kw.items() if k in vlm.VlmConfig.__dataclass_fields__}
    rest = {k: v for k, v in kw.items() if k not in own}
    return vlm.run(ff, vlm.VlmConfig(**own), video, endpoint(server, **rest), cache=cache)


def no_key(result) -> None:
    assert KEY not in (result.message or "")
    assert KEY not in repr(result.columns)


def test_correct_answers_score_and_columns():
    with vlm_server("correct", answers=NO) as server:
        video = {"video_id": "v1", "caption": "a person walks a dog in a park"}
        ok = ask(server, frames(), video)
        assert ok.status == "ok" and ok.score == 1.0
        assert {name for name, _ in vlm.COLUMNS} == set(ok.columns)
        assert all(ok.columns[q] is False for q in vlm.ANSWERS)
        assert ok.columns["tokens_in"] == 100 + 85 * 4 and ok.columns["tokens_out"] == 20
        assert ok.columns["cost_usd"] == pytest.approx((440 * 1.0 + 20 * 4.0) / 1e6)
        assert ok.columns["cached"] is False and ok.columns["model"] == "test-vlm"
        assert ok.columns["prompt_version"] == "1" and ok.columns["vlm_mode"] == "binary"

        body = server.bodies[-1]
        assert body["response_format"]["type"] == "json_schema"
        parts = body["messages"][-1]["content"]
        images = [p for p in parts if p["type"] == "image_url"]
        assert len(images) == 4 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])[:2] == b"\xff\xd8"
        assert "a person walks a dog" in parts[0]["text"]
        assert server.headers[-1].get("authorization") == f"Bearer {KEY}"  # sent, never shown

        server.set(answers={**NO, "q_children": True})
        bad = ask(server, frames(), video)
        assert bad.status == "ok" and bad.score == 0.0 and bad.columns["q_children"] is True
        no_key(ok)
        no_key(bad)


def test_frames_sampled_and_shrunk():
    big = FilterFrames(np.zeros((10, 720, 1280, 3), np.uint8), np.arange(10) / 6.0, 6.0, 1280, 720)
    jpegs = vlm.sample_jpegs(big, 4, 512)
    assert len(jpegs) == 4
    assert cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape == (288, 512, 3)
    assert len(vlm.sample_jpegs(frames(2), 4, 512)) == 2


def test_strict_parsing():
    assert vlm.parse_answer("not json", "binary") is None
    assert vlm.parse_answer('{"q_children": false}', "binary") is None  # missing questions
    assert vlm.parse_answer(json.dumps({**NO, "q_children": "no"}), "binary") is None
    assert vlm.parse_answer(json.dumps({**NO, "extra": False}), "binary") is None
    assert vlm.parse_answer('{"suitability": 11}', "score") is None
    assert vlm.parse_answer('{"suitability": true}', "score") is None
    assert vlm.parse_answer('{"suitability": 7}', "score") == {"suitability": 7.0}


def test_garbage_is_bad_answer_and_not_cached():
    cache = DictCache()
    with vlm_server("garbage") as server:
        result = ask(server, frames(), {"video_id": "v1"}, cache=cache)
        assert result.status == "vlm_bad_answer" and result.score is None
        assert cache.data == {}
        assert result.columns["tokens_in"] > 0  # the spend is still recorded
        no_key(result)
        # asked again on the next run, since nothing was cached
        ask(server, frames(), {"video_id": "v1"}, cache=cache)
        assert server.requests == 2


def test_http500_is_error_after_retries_and_not_cached():
    cache = DictCache()
    with vlm_server("http500") as server:
        result = ask(server, frames(), {"video_id": "v1"}, cache=cache, max_retries=2)
        assert result.status == "vlm_error" and result.score is None
        assert "InternalServerError" in result.message
        assert server.requests == 3  # the first try and two retries
        assert cache.data == {}
        no_key(result)


def test_429_with_retry_after_then_ok():
    with vlm_server("429", fail_first=1, answers=NO) as server:
        start = time.monotonic()
        result = ask(server, frames(), {"video_id": "v1"}, max_retries=2)
        assert result.status == "ok" and result.score == 1.0
        assert server.requests == 2
        assert time.monotonic() - start >= 0.9  # Retry-After: 1 was honoured


def test_hang_times_out():
    with vlm_server("hang", hang_s=10) as server:
        start = time.monotonic()
        result = ask(server, frames(), {"video_id": "v1"}, timeout_s=0.5, max_retries=1)
        elapsed = time.monotonic() - start
        assert result.status == "vlm_error" and "Timeout" in result.message
        assert elapsed < 0.5 * 2 + 2.5  # two tries, plus the client's backoff
        no_key(result)


def test_no_endpoint_is_skipped_without_requests():
    with vlm_server("correct") as server:
        for kw in ({"base_url": ""}, {"model": ""}):
            result = ask(server, frames(), {"video_id": "v1"}, **kw)
            assert result.status == "skipped" and result.score is None
            assert result.message == "no VLM endpoint configured"
        assert server.requests == 0


def test_no_frames_is_too_few_frames_without_requests():
    with vlm_server("correct") as server:
        empty = FilterFrames(np.zeros((0, 90, 160, 3), np.uint8), np.zeros(0), 6.0, 160, 90)
        assert ask(server, empty, {"video_id": "v1"}).status == "too_few_frames"
        assert server.requests == 0


def test_base_url_from_environment(monkeypatch):
    with vlm_server("correct") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        from_env = VlmEndpoint(model="test-vlm", api_key_env="DYNPOSE_TEST_VLM_KEY")
        assert from_env.base_url == server.base_url and from_env.configured
        assert vlm.run(frames(), vlm.VlmConfig(), {"video_id": "v1"}, from_env).status == "ok"
        assert server.requests == 1


def test_cache_in_lake_second_run_sends_nothing(tmp_path):
    cache = VlmCache(Lake(str(tmp_path / "lake")))
    with vlm_server("correct", answers={**NO, "q_static_scene": True}) as server:
        first = [ask(server, frames(seed=i), {"video_id": f"v{i}"}, cache=cache) for i in range(3)]
        assert server.requests == 3 and len(cache) == 3
        assert list((tmp_path / "lake" / "_vlm_cache").rglob("*.json"))
        again = [ask(server, frames(seed=i), {"video_id": f"v{i}"}, cache=cache) for i in range(3)]
        assert server.requests == 3  # zero new requests
        for a, b in zip(first, again):
            assert b.columns["cached"] is True and b.score == a.score == 0.0
            assert b.columns["q_static_scene"] is True and b.columns["tokens_in"] == a.columns["tokens_in"]
        # another model, prompt version or frames: a new request
        ask(server, frames(seed=0), {"video_id": "v0"}, cache=cache, prompt_version="2")
        ask(server, frames(seed=9), {"video_id": "v0"}, cache=cache)
        assert server.requests == 5
    assert cache.get("0" * 64) is None


def test_score_mode():
    with vlm_server("correct", answers={"suitability": 7}) as server:
        result = ask(server, frames(), {"video_id": "v1"}, mode="score")
        assert result.status == "ok" and result.score == pytest.approx(0.7)
        assert result.columns["suitability"] == 7.0 and result.columns["vlm_mode"] == "score"
        assert server.bodies[-1]["response_format"]["json_schema"]["name"] == vlm.SCORE_SCHEMA["name"]
        server.set(answers={"suitability": "high"})
        assert ask(server, frames(), {"video_id": "v1"}, mode="score").status == "vlm_bad_answer"


def test_oracle_answers_from_labels():
    labels = {"vid-a": {"q_synthetic": True}, "vid-b": {}}
    with vlm_server("oracle", labels=labels) as server:
        a = ask(server, frames(), {"video_id": "vid-a"})
        b = ask(server, frames(), {"video_id": "vid-b"})
        assert (a.score, a.columns["q_synthetic"], b.score) == (0.0, True, 1.0)
        s = ask(server, frames(), {"video_id": "vid-b"}, mode="score")
        assert s.score == 1.0
        assert ask(server, frames(), {"video_id": "unknown"}).status == "vlm_error"


def test_rate_limiter_spaces_requests():
    limiter = vlm_client.RateLimiter(per_minute=600)  # one every 0.1 s
    start = time.monotonic()
    for _ in range(4):
        limiter.acquire()
    assert time.monotonic() - start >= 0.29
