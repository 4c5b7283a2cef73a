"""The spine: ingest, clip catalog, ledger staleness, atomic writes, SQL, sensor, local and S3 lakes."""

from __future__ import annotations

import dataclasses
import io
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from dynpose.cli import main as cli_main
from dynpose.domain.synth.io import encode_mp4
from dynpose.graph import products
from dynpose.graph.orchestrate import materialize
from dynpose.graph.settings import IngestSettings, Settings, load_settings
from dynpose.storage.ingest import Registry, ingest
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import Ledger

from .conftest import real_clip

REPO = Path(__file__).resolve().parents[1]


# The spine's own products; the annotation graph has its own tests (test_annotation_graph.py).
RAW = ["clip_catalog", "sampled_frames"]


def _actions(outcomes):
    return sorted((o.product, o.shard, o.action) for o in outcomes)


def test_definitions_validate():
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed validation" in out.stdout + out.stderr


def test_ingest_and_catalog_statuses(mixed_videos, lake_url, capsys):
    lake = Lake(lake_url)
    report = ingest(str(mixed_videos), lake, IngestSettings(shard_size=4))
    # 6 files, one duplicate of bikes.mp4: 5 videos in shards of at most 4.
    assert report.new_videos == 5
    assert [len(Registry(lake).videos(s)) for s in report.new_shards] == [4, 1]
    assert [Path(u).name for u, _ in report.duplicates] == ["bikes_again.mp4"]

    outcomes = materialize(lake_url, select=RAW, progress=False)
    assert {o.action for o in outcomes} == {"computed"}
    catalog = lake.read_product("clip_catalog").to_pylist()
    by_name = {Path(r["source_uri"]).name: r for r in catalog}
    assert len(catalog) == 5
    assert by_name["bikes.mp4"]["status"] == "ok"
    assert by_name["bikes.mp4"]["caption"] == "two cyclists on a road"
    assert (by_name["bikes.mp4"]["width"], by_name["bikes.mp4"]["height"]) == (640, 272)
    assert by_name["bikes.mp4"]["frame_count"] == 250
    assert by_name["carphone.mp4"]["status"] == "ok"
    assert by_name["notes.mp4"]["status"] == "unreadable"
    assert by_name["empty.mp4"]["status"] == "empty"
    assert by_name["truncated.mp4"]["status"] in {"undecodable", "unreadable"}
    assert all(r["message"] for r in catalog if r["status"] != "ok")

    # The same file ingested again, under a new name too, adds nothing.
    shutil.copy(mixed_videos / "carphone.mp4", mixed_videos / "carphone_renamed.mp4")
    again = ingest(str(mixed_videos), lake, IngestSettings(shard_size=4))
    assert again.new_videos == 0 and again.already_seen == 6 and len(again.duplicates) == 1

    capsys.readouterr()
    assert (
        cli_main(
            [
                "--lake",
                lake_url,
                "sql",
                "select status, count(*) as n from clip_catalog group by 1 order by 1",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    counts = dict(line.replace('"', "").split(",") for line in lines[1:])
    assert counts.pop("ok") == "2" and counts.pop("empty") == "1" and counts.pop("unreadable") == "1"
    assert list(counts.values()) == ["1"]  # the truncated file
    # A bad query is a one-line error and exit status 2, not a traceback.
    assert cli_main(["--lake", lake_url, "sql", "select no_such_column from clip_catalog"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sql error:") and "no_such_column" in err and "Traceback" not in err


def test_rerun_is_noop_and_code_bump_recomputes_only_downstream(mixed_videos, lake_url, monkeypatch):
    lake = Lake(lake_url)
    ingest(str(mixed_videos), lake, IngestSettings(shard_size=3))
    seen = []

    class Record(logging.Handler):
        def emit(self, record):
            seen.append((record.getMessage(), record.done, record.total))

    progress_log = logging.getLogger("dynpose.progress")
    progress_log.addHandler(handler := Record())
    try:
        first = materialize(lake_url, select=RAW, progress=True)  # per-video progress reaches the CLI's bar
    finally:
        progress_log.removeHandler(handler)
    assert {o.action for o in first} == {"computed"} and len(first) == 4
    finals = {(msg, done) for msg, done, total in seen if done == total}
    # (s00001 holds no decodable video, so sampled_frames has nothing to report there)
    assert {msg for msg, _ in finals} == {"clip_catalog[s00000]", "clip_catalog[s00001]", "sampled_frames[s00000]"}
    catalog = lake.read_product("clip_catalog").num_rows
    assert sum(total for msg, done, total in seen if done == total and msg.startswith("clip_catalog")) == catalog > 0

    second = materialize(lake_url, select=RAW, progress=False)
    assert {o.action for o in second} == {"skipped"} and len(second) == 4
    history = Ledger(lake).history().to_pylist()
    assert sum(r["action"] == "skipped" for r in history) == 4

    # Bump the downstream product: only it recomputes.
    bumped = dataclasses.replace(products.PRODUCTS["sampled_frames"], code_version="bumped")
    monkeypatch.setitem(products.PRODUCTS, "sampled_frames", bumped)
    third = materialize(lake_url, select=RAW, progress=False)
    assert _actions(third) == sorted(
        [("clip_catalog", s, "skipped") for s in ("s00000", "s00001")]
        + [("sampled_frames", s, "computed") for s in ("s00000", "s00001")]
    )

    # Bump the upstream product: it and everything downstream recompute, on every shard.
    monkeypatch.setitem(
        products.PRODUCTS, "clip_catalog", dataclasses.replace(products.PRODUCTS["clip_catalog"], code_version="bumped")
    )
    fourth = materialize(lake_url, select=RAW, progress=False)
    assert {o.action for o in fourth} == {"computed"} and len(fourth) == 4


def test_config_change_makes_only_that_product_stale(mixed_videos, tmp_path):
    lake_url = str(tmp_path / "lake")
    ingest(str(mixed_videos), Lake(lake_url), IngestSettings(shard_size=10))
    materialize(lake_url, select=RAW, progress=False)
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("sampled_frames:\n  fps: 6\n")
    assert load_settings(cfg).sampled_frames.fps == 6
    outcomes = materialize(lake_url, settings_file=str(cfg), select=RAW, progress=False)
    assert _actions(outcomes) == [("clip_catalog", "s00000", "skipped"), ("sampled_frames", "s00000", "computed")]
    frames = Lake(lake_url).read_table("sampled_frames", "s00000").to_pylist()
    bikes_frames = [r for r in frames if r["timestamp_s"] is not None]
    assert bikes_frames and max(r["timestamp_s"] for r in bikes_frames) > 9.0
    # 10 s of video at 6 fps: about 60 frames for bikes and 24 for the 4 s carphone clip.
    assert 80 <= len(frames) <= 90

    bad = tmp_path / "bad.yaml"
    bad.write_text("sampled_frames:\n  fsp: 6\n")
    with pytest.raises(ValueError, match="unknown settings key"):
        load_settings(bad)


def test_new_videos_compute_only_new_shards(mixed_videos, tmp_path):
    lake_url = str(tmp_path / "lake")
    ingest(str(mixed_videos), Lake(lake_url), IngestSettings(shard_size=64))
    materialize(lake_url, select=RAW, progress=False)
    rng = np.random.default_rng(0)  # a new video: 12 frames of noise, H.264
    encode_mp4(mixed_videos / "new.mp4", rng.integers(0, 255, (12, 48, 64, 3), np.uint8), fps=12.0)
    report = ingest(str(mixed_videos), Lake(lake_url), IngestSettings(shard_size=64))
    assert report.new_shards == ["s00001"]
    outcomes = materialize(lake_url, select=RAW, progress=False)
    assert _actions(outcomes) == [
        ("clip_catalog", "s00000", "skipped"),
        ("clip_catalog", "s00001", "computed"),
        ("sampled_frames", "s00000", "skipped"),
        ("sampled_frames", "s00001", "computed"),
    ]


def test_killed_materialization_leaves_no_partial_file_and_rerun_completes(tmp_path):
    """Kill ``dynpose materialize`` at several moments while a watcher reads every visible file."""
    src = tmp_path / "videos"
    src.mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4", "03_blocks.mp4", "05_default_juggle.mp4"):
        shutil.copy(real_clip(name), src / name)
    lake_url = str(tmp_path / "lake")
    ingest(str(src), Lake(lake_url), IngestSettings(shard_size=1))
    tables = Path(lake_url) / "tables"
    bad: list[str] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for f in tables.rglob("*.parquet") if tables.exists() else []:
                try:
                    pq.read_table(io.BytesIO(f.read_bytes()))
                except FileNotFoundError:
                    pass
                except Exception as exc:  # a visible file that does not parse is a partial write
                    bad.append(f"{f}: {exc}")
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cmd = [
        sys.executable,
        "-m",
        "dynpose.cli",
        "--lake",
        lake_url,
        "materialize",
        "--quiet",
        "--select",
        "clip_catalog",
        "--select",
        "sampled_frames",
    ]
    killed = 0
    for delay in (2.5, 3.5, 4.5):
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.kill()
            killed += 1
        proc.wait()
    final = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    stop.set()
    watcher.join()
    assert killed >= 1, "materialization finished before it could be killed; the check proved nothing"
    assert final.returncode == 0, final.stdout + final.stderr
    assert not bad, bad
    assert not [p for p in tables.rglob("*") if p.is_file() and p.name != "data.parquet"], "temporaries left visible"
    lake = Lake(lake_url)
    assert sorted(lake.product_shards("clip_catalog")) == Registry(lake).shards()
    assert sorted(lake.product_shards("sampled_frames")) == Registry(lake).shards()
    again = materialize(lake_url, select=RAW, progress=False)
    assert {o.action for o in again} == {"skipped"}


def test_sensors_list_the_source_then_request_one_run_per_new_shard(mixed_videos, tmp_path, monkeypatch):
    from dynpose.resources import LakeResource
    from dynpose.sensors import ingest_job, shard_sensor, source_sensor

    lake_url = str(tmp_path / "lake")
    monkeypatch.setenv("DYNPOSE_SOURCE", str(mixed_videos))
    instance = dg.DagsterInstance.ephemeral()
    resources = {"lake": LakeResource(url=lake_url)}
    # The source sensor only lists: it asks for an ingest run and hashes nothing itself.
    request = source_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("ingest-")
    assert Registry(Lake(lake_url)).shards() == []
    assert isinstance(shard_sensor(dg.build_sensor_context(instance=instance, resources=resources)), dg.SkipReason)
    assert ingest_job.execute_in_process(instance=instance, resources=resources).success
    shards = Registry(Lake(lake_url)).shards()
    assert shards and isinstance(
        source_sensor(dg.build_sensor_context(instance=instance, resources=resources)), dg.SkipReason
    )

    result = shard_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests] == shards
    assert [r.run_key for r in result.run_requests] == [f"shard-{s}" for s in shards]
    assert result.cursor == shards[-1]
    # Nothing new: the next tick with the cursor skips.
    again = shard_sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert isinstance(again, dg.SkipReason)


def test_status_reports_stale_counts(mixed_videos, tmp_path, capsys, monkeypatch):
    lake_url = str(tmp_path / "lake")
    ingest(str(mixed_videos), Lake(lake_url), IngestSettings(shard_size=3))
    materialize(lake_url, select=RAW, progress=False)
    monkeypatch.setitem(
        products.PRODUCTS, "clip_catalog", dataclasses.replace(products.PRODUCTS["clip_catalog"], code_version="2")
    )
    capsys.readouterr()
    assert cli_main(["--lake", lake_url, "status"]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("clip_catalog"))
    assert row[1:] == ["2", "2", "0", "2", "0"]  # code_version, shards, fresh, stale, missing


def test_settings_sections_are_hashed_separately():
    from dynpose.storage.ledger import config_hash

    a, b = Settings(), Settings()
    b.sampled_frames.fps = 6
    assert config_hash(a.clip_catalog) == config_hash(b.clip_catalog)
    assert config_hash(a.sampled_frames) != config_hash(b.sampled_frames)


def test_incomplete_dagster_storage_is_moved_aside(tmp_path, monkeypatch, capsys):
    # Seen when `dynpose materialize` was killed while Dagster created its SQLite tables: the next
    # run failed on the missing dynamic-partitions table, which `dagster instance migrate` does not add.
    import sqlite3

    from dynpose.graph.orchestrate import instance_for

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    lake = Lake(str(tmp_path / "lake"))
    instance_for(lake).add_dynamic_partitions("video_shards", ["s00000"])
    dropped = 0
    for db in (tmp_path / "lake" / "_dagster").rglob("*.db"):
        with sqlite3.connect(db) as con:
            if con.execute("select name from sqlite_master where name = 'dynamic_partitions'").fetchone():
                con.execute("drop table dynamic_partitions")
                dropped += 1
    assert dropped == 1
    monkeypatch.delenv("DAGSTER_HOME")
    instance = instance_for(lake)
    instance.add_dynamic_partitions("video_shards", ["s00001"])
    assert instance.get_dynamic_partitions("video_shards") == ["s00001"]
    assert "moved to" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "lake" / "_dagster").glob("broken-*/history")]
