"""The VLM filter in the graph against the local test server (dynpose.evaluation.vlm_server): every
fault leaves the shard complete with a status per video and nothing cached, failed videos are asked
again on the next run, a recompute after a clean run sends no request, a killed run resumes without
asking again what it had answered, and the spend shows in `dynpose status` and SQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from dynpose.cli import main as cli_main
from dynpose.domain.synth.io import encode_mp4
from dynpose.evaluation.vlm_server import vlm_server
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import Ledger
from dynpose.storage.sql import query
from dynpose.storage.vlm_cache import VlmCache
from tests.filter_textures import texture

KEY_ENV = "DYNPOSE_TEST_VLM_KEY"
FILTERS_BEFORE_VLM = ["content", "flow", "focal", "distortion", "tracking", "masking"]
EARLIER = ["clip_catalog", *[f"filter_{n}" for n in FILTERS_BEFORE_VLM]]
VIDEOS = 4  # good panning clips, plus one corrupt file


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def filtered_lake(tmp_path_factory):
    """A lake with one shard whose earlier filters are computed (every video reaches the VLM)."""
    root = tmp_path_factory.mktemp("vlm_graph")
    src = root / "videos"
    src.mkdir()
    for k in range(VIDEOS):
        big = texture(120, 400, seed=k)
        encode_mp4(src / f"pan{k}.mp4", np.stack([big[15:105, 4 * t : 4 * t + 160] for t in range(24)]), 12)
    (src / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    lake = str(root / "lake")
    settings = _settings(root / "settings.yaml", base_url="http://127.0.0.1:9/v1")
    assert cli_main(["--lake", lake, "ingest", str(src)]) == 0
    assert _materialize(lake, settings, EARLIER) == 0
    return root


def _settings(path, **vlm) -> str:
    endpoint = dict(model="test-vlm", api_key_env=KEY_ENV, timeout_s=1, max_retries=1, requests_per_minute=0)
    # every filter runs on every video, and every video passes: the decision's reason lists what did not score
    cascade = {"mode": "all", "stage_thresholds": [0.0] * 5, "final_threshold": 0.0}
    data = {"filter_decisions": cascade, "vlm": {**endpoint, **vlm}}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _materialize(lake: str, settings: str, products: list[str]) -> int:
    args = ["--lake", lake, "--settings", settings, "materialize", "--quiet"]
    return cli_main(args + [a for p in products for a in ("--select", p)])


def _copy(filtered_lake, tmp_path) -> tuple[str, Lake]:
    shutil.copytree(filtered_lake / "lake", tmp_path / "lake")
    return str(tmp_path / "lake"), Lake(str(tmp_path / "lake"))


def _rows(lake: Lake) -> dict[str, dict]:
    names = {r["video_id"]: r["source_uri"].rsplit("/", 1)[-1] for r in lake.read_product("clip_catalog").to_pylist()}
    return {names[r["video_id"]]: r for r in lake.read_product("filter_vlm").to_pylist()}


def _asked(server) -> list[str]:
    """The video ids of the requests the server received (the filter writes them into the prompt)."""
    out = []
    for body in server.bodies:
        text = body["messages"][-1]["content"][0]["text"]
        out.append(text.rsplit("Video id: ", 1)[-1].strip())
    return out


@pytest.mark.parametrize(
    "mode,status", [("garbage", "vlm_bad_answer"), ("http500", "vlm_error"), ("hang", "vlm_error")]
)
def test_a_fault_leaves_the_shard_complete_nothing_cached_and_the_next_run_asks_again(
    filtered_lake, tmp_path, mode, status
):
    lake_url, lake = _copy(filtered_lake, tmp_path)
    with vlm_server(mode, hang_s=5) as server:
        settings = _settings(tmp_path / "s.yaml", base_url=server.base_url)
        assert _materialize(lake_url, settings, ["filter_vlm", "filter_decisions"]) == 0
        rows = _rows(lake)
        assert len(rows) == VIDEOS + 1 and rows["corrupt.mp4"]["status"] == "unreadable"
        good = [r for name, r in rows.items() if name != "corrupt.mp4"]
        assert all(r["status"] == status and r["score"] is None and r["message"] for r in good), good
        assert len(VlmCache(lake)) == 0
        decisions = lake.read_product("filter_decisions").to_pylist()
        assert len(decisions) == VIDEOS + 1 and all(d["vlm_score"] is None for d in decisions)
        assert sum(f"vlm ({status})" in d["reason"] for d in decisions) == VIDEOS, decisions

        (shard,) = lake.product_shards("filter_vlm")
        state = Ledger(lake).state("filter_vlm", shard)
        assert state.retry == VIDEOS  # the shard stays stale for those videos
        asked = server.requests
        server.set(mode="correct")
        assert _materialize(lake_url, settings, ["filter_vlm", "filter_decisions"]) == 0
        assert server.requests == asked + VIDEOS
        assert all(r["status"] == "ok" and r["score"] == 1.0 for n, r in _rows(lake).items() if n != "corrupt.mp4")
        assert len(VlmCache(lake)) == VIDEOS and Ledger(lake).state("filter_vlm", shard).retry == 0


def test_a_clean_rerun_and_a_recompute_send_no_request_and_the_spend_is_shown(filtered_lake, tmp_path, capsys):
    lake_url, lake = _copy(filtered_lake, tmp_path)
    with vlm_server("correct") as server:
        settings = _settings(tmp_path / "s.yaml", base_url=server.base_url, prices={"test-vlm": [1.0, 4.0]})
        assert _materialize(lake_url, settings, ["filter_vlm", "filter_decisions"]) == 0
        assert server.requests == VIDEOS
        first = _rows(lake)
        assert _materialize(lake_url, settings, ["filter_vlm", "filter_decisions"]) == 0  # fresh: skipped
        # a setting that changes the product's version (not what is asked): recomputed from the cache
        settings = _settings(
            tmp_path / "s.yaml", base_url=server.base_url, timeout_s=2, prices={"test-vlm": [1.0, 4.0]}
        )
        assert _materialize(lake_url, settings, ["filter_vlm", "filter_decisions"]) == 0
        assert server.requests == VIDEOS
        again = _rows(lake)
        assert all(again[n]["cached"] and again[n]["score"] == first[n]["score"] for n in first if n != "corrupt.mp4")

    spend = query(lake, "select * from vlm_spend where use = 'filter_vlm'").to_pylist()
    assert len(spend) == 1 and spend[0]["videos"] == VIDEOS + 1
    assert spend[0]["asked"] == 0 and spend[0]["cached"] == VIDEOS  # the table now holds cached answers only
    tokens = sum(r["tokens_in"] for r in first.values() if r["tokens_in"])
    assert tokens > 0 and spend[0]["saved_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in first.values()))
    capsys.readouterr()
    assert cli_main(["--lake", lake_url, "--settings", settings, "status"]) == 0
    out = capsys.readouterr().out
    assert "VLM spend" in out and "filter_vlm" in out


def test_a_killed_run_resumes_without_asking_again(filtered_lake, tmp_path):
    lake_url, lake = _copy(filtered_lake, tmp_path)
    with vlm_server("hang", hang_s=0.7) as server:  # a slow but correct server
        settings = _settings(tmp_path / "s.yaml", base_url=server.base_url, concurrency=1, timeout_s=5)
        cmd = [sys.executable, "-m", "dynpose.cli", "--lake", lake_url, "--settings", settings, "materialize"]
        cmd += ["--quiet", "--select", "filter_vlm"]
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while len(VlmCache(lake)) < 2 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        answered = len(VlmCache(lake))
        assert 2 <= answered < VIDEOS, "the run was not killed in the middle"
        assert lake.read_product("filter_vlm") is None  # nothing half-written
        before = _asked(server)

        server.set(mode="correct")
        assert _materialize(lake_url, settings, ["filter_vlm"]) == 0
        after = _asked(server)[len(before) :]
        assert len(after) == VIDEOS - answered and len(set(after)) == len(after)  # only what had no answer
        assert set(before) | set(after) == {r["video_id"] for n, r in _rows(lake).items() if n != "corrupt.mp4"}
        assert all(r["status"] == "ok" for n, r in _rows(lake).items() if n != "corrupt.mp4")


def test_the_oracle_answers_from_the_generator_labels():
    from dynpose.domain.filters.vlm import ANSWERS
    from dynpose.domain.synth.variants import VARIANTS
    from dynpose.evaluation.filters import ORACLE_YES, oracle_labels

    labels = oracle_labels({v: VARIANTS[v][2] for v in VARIANTS})
    assert labels["none"] == {} and labels["static_scene"] == {"q_static_scene": True}
    assert labels["cartoon"] == {"q_synthetic": True} and labels["tripod"] == {}  # no question asks about a tripod
    assert all(q in ANSWERS for qs in ORACLE_YES.values() for q in qs)
    with pytest.raises(ValueError, match="no synthetic variant"):
        oracle_labels({"x": "a real clip's reason"})
