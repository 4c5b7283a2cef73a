"""Planning at scale: the ledger snapshot (bulk state reads, the state index) plans exactly as the
per-file ledger does, a new shard makes only itself and the aggregates stale, and the index is a
cache the plan never depends on (missing, corrupt or outdated: the states are read instead)."""

from __future__ import annotations

import json

from dynpose.benchmarks import big_lake_shard, make_big_lake
from dynpose.graph.orchestrate import plan_shard, status
from dynpose.graph.products import PRODUCTS, plan_product, topological
from dynpose.graph.settings import load_settings
from dynpose.graph.steps.base import AGGREGATE
from dynpose.storage.ingest import Registry
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import INDEX_DIR, Ledger, LedgerSnapshot, MissingInput


def _plan_all(lake: Lake, ledger: Ledger | None) -> dict[tuple[str, str], str | None]:
    """Every (product, shard)'s reason (None when fresh), as status and materialize see it."""
    settings = load_settings(None)
    out = {}
    for shard in Registry(lake).shards() + [AGGREGATE]:
        for p in topological():
            if p.aggregate != (shard == AGGREGATE):
                continue
            try:
                out[p.name, shard] = plan_product(lake, p, shard, settings, ledger)
            except MissingInput as exc:
                out[p.name, shard] = f"missing input: {exc}"
    return out


def _edit_state(lake: Lake, product: str, shard: str, **changes) -> None:
    path = lake.path("_state", product, f"{shard}.json")
    row = lake.get_json(path)
    row.update(changes)
    lake.put_json(path, row)


def _mixed_lake(url: str, shards: int) -> Lake:
    """A generated lake, then some shards made stale, some outputs and states removed, a new shard."""
    make_big_lake(url, shards, log=lambda _m: None)
    lake = Lake(url)
    _edit_state(lake, "filter_flow", "s00001", code_version="0")  # stale, and its downstream
    _edit_state(lake, "camera_poses", "s00002", config_hash="0" * 16)
    _edit_state(lake, "pose_quality", "s00003", input_versions=json.dumps({"camera_poses": "x" * 16}))
    _edit_state(lake, "filter_vlm", "s00004", retry=2)
    lake.fs.rm(lake.table_path("tracklets", "s00005"))  # output missing
    lake.fs.rm(lake.path("_state", "clip_catalog", "s00006.json"))  # never computed, inputs missing below
    lake.fs.rm(lake.path("_state", "mask_benchmark", "s00007.json"))
    new = big_lake_shard(lake, f"s{shards:05d}", load_settings(None))
    manifest = lake.path("_shards", f"s{shards:05d}.json")
    lake.put_bytes(manifest, new[manifest])  # ingested, nothing computed
    return lake


def _fresh_count(plans) -> int:
    return sum(r is None for r in plans.values())


def test_snapshot_plans_like_the_per_file_ledger(lake_url):
    lake = _mixed_lake(lake_url, 8 if lake_url.startswith("s3://") else 50)
    old = _plan_all(lake, None)
    first = _plan_all(lake, LedgerSnapshot(lake))  # no index yet: reads every state, writes the index
    assert first == old
    assert lake.listdir(lake.path(INDEX_DIR))
    again = LedgerSnapshot(lake)
    assert _plan_all(lake, again) == old
    assert again.files_read == 0  # every state from the index
    # Every kind of reason shows up, and most of the lake is fresh.
    reasons = set(old.values())
    for expected in ("code version 0 -> 1", "output missing", "never computed", "2 video(s) to retry"):
        assert expected in reasons
    assert any(r and r.startswith("config changed") for r in reasons)
    assert any(r and r.startswith("input changed") for r in reasons)
    assert any(r and r.startswith("missing input") for r in reasons)
    assert _fresh_count(old) > len(old) // 2


def test_plan_shard_and_status_agree(tmp_path):
    lake = _mixed_lake(str(tmp_path / "lake"), 12)
    settings = load_settings(None)
    names = [p.name for p in topological() if not p.aggregate]
    snap = LedgerSnapshot(lake)
    for shard in Registry(lake).shards():
        assert plan_shard(lake, shard, settings, names, snap) == plan_shard(lake, shard, settings, names)
    rows = {r["product"]: r for r in status(str(lake.url))}
    old = _plan_all(lake, None)
    for name, row in rows.items():
        reasons = [r for (p, _s), r in old.items() if p == name]
        assert row["fresh"] == sum(r is None for r in reasons)


def test_one_new_shard_stales_only_itself_and_the_aggregates(tmp_path):
    url = str(tmp_path / "lake")
    make_big_lake(url, 12, log=lambda _m: None)
    lake = Lake(url)
    assert all(r is None for r in _plan_all(lake, LedgerSnapshot(lake)).values())  # a no-op plan
    files = big_lake_shard(lake, "s00012", load_settings(None))
    manifest = lake.path("_shards", "s00012.json")
    lake.put_bytes(manifest, files.pop(manifest))
    plans = _plan_all(lake, LedgerSnapshot(lake))
    stale = {key for key, reason in plans.items() if reason is not None}
    # Before its run: only the new shard (the aggregates hash the states, which have not changed).
    assert stale == {(p.name, "s00012") for p in PRODUCTS.values() if not p.aggregate}
    # Its products computed (as its run writes them): the aggregates' inputs changed, nothing else.
    for path, data in files.items():
        lake.put_bytes(path, data)
    plans = _plan_all(lake, LedgerSnapshot(lake))
    assert {key for key, reason in plans.items() if reason is not None} == {
        (p.name, AGGREGATE) for p in PRODUCTS.values() if p.aggregate
    }
    assert plans["filter_benchmark", AGGREGATE].startswith("input changed")


def test_index_is_only_a_cache(tmp_path):
    lake = _mixed_lake(str(tmp_path / "lake"), 12)
    old = _plan_all(lake, None)
    assert _plan_all(lake, LedgerSnapshot(lake)) == old  # writes the index
    index = lake.path(INDEX_DIR, "filter_flow.json")
    outdated = lake.get_bytes(index)
    # A shard run writes its state after the index was made: the new signature makes it re-read.
    _edit_state(lake, "filter_flow", "s00008", code_version="0")
    _edit_state(lake, "filter_flow", "s00001", code_version="1")  # same size as before: still seen
    old = _plan_all(lake, None)
    snap = LedgerSnapshot(lake)
    assert _plan_all(lake, snap) == old
    assert old["filter_flow", "s00008"] == "code version 0 -> 1" and old["filter_flow", "s00001"] is None
    assert snap.files_read == 2
    # Two planners racing: the slower one puts back an outdated index. Still only a cache.
    lake.put_bytes(index, outdated)
    assert _plan_all(lake, LedgerSnapshot(lake)) == old
    # Corrupt, missing, or a state removed since: the states are read.
    lake.put_bytes(lake.path(INDEX_DIR, "camera_poses.json"), b"{not json")
    lake.fs.rm(lake.path(INDEX_DIR, "clip_catalog.json"))
    lake.fs.rm(lake.path("_state", "sampled_frames", "s00009.json"))
    old = _plan_all(lake, None)
    assert old["sampled_frames", "s00009"] == "never computed"
    assert _plan_all(lake, LedgerSnapshot(lake)) == old
    assert _plan_all(lake, LedgerSnapshot(lake, use_index=False)) == old
