"""The LanceDB side of the lake and the Dagster webserver behind `dynpose ui`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pyarrow as pa

from dynpose.storage.lake import Lake

from .conftest import _free_port


def test_lance_shard_rewrite_keeps_other_shards(lake_url):
    lake = Lake(lake_url)

    def rows(shard, n, fill):
        return pa.table(
            {
                "video_id": [f"v{i}" for i in range(n)],
                "shard": [shard] * n,
                "frame_index": list(range(n)),
                "mask_png": [bytes([fill]) * 8] * n,
            }
        )

    lake.replace_lance_shard("masks", "s00000", rows("s00000", 3, 1))
    lake.replace_lance_shard("masks", "s00001", rows("s00001", 2, 2))
    lake.replace_lance_shard("masks", "s00000", rows("s00000", 4, 3))  # a rerun rewrites only its shard
    a = lake.read_lance_shard("masks", "s00000")
    b = lake.read_lance_shard("masks", "s00001")
    assert a.num_rows == 4 and set(a.column("mask_png").to_pylist()) == {bytes([3]) * 8}
    assert b.num_rows == 2 and set(b.column("mask_png").to_pylist()) == {bytes([2]) * 8}
    assert lake.read_lance_shard("tracks", "s00000") is None
    # A new product version adds a column (tracklets v2 added "continues"): the table takes it,
    # the other shard's rows keep their data with nulls in it.
    lake.replace_lance_shard("masks", "s00001", rows("s00001", 2, 5).append_column("extra", pa.array([b"x", b"y"])))
    a = lake.read_lance_shard("masks", "s00000")
    b = lake.read_lance_shard("masks", "s00001")
    assert (
        a.num_rows == 4
        and set(a.column("mask_png").to_pylist()) == {bytes([3]) * 8}
        and a.column("extra").null_count == 4
    )
    assert sorted(b.column("extra").to_pylist()) == [b"x", b"y"]


def test_ui_serves_the_code_location_on_loopback(tmp_path):
    port = _free_port()
    env = dict(os.environ, DYNPOSE_LAKE=str(tmp_path / "lake"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynpose.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        info = None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    info = json.loads(r.read())
                break
            except OSError:
                time.sleep(1)
        assert info is not None, proc.stdout.read().decode() if proc.poll() is not None else "webserver did not answer"
        assert "dagster_webserver_version" in info
        query = {"query": "{ assetNodes { assetKey { path } } }"}
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps(query).encode(),
            headers={"Content-Type": "application/json"},
        )
        deadline = time.time() + 60
        keys: set[str] = set()
        while time.time() < deadline and "clip_catalog" not in keys:
            with urllib.request.urlopen(req, timeout=30) as r:
                nodes = json.loads(r.read())["data"]["assetNodes"]
            keys = {n["assetKey"]["path"][-1] for n in nodes}
            time.sleep(1)
        assert {"clip_catalog", "sampled_frames"} <= keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
