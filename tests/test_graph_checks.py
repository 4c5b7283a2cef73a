"""Asset checks on stored shards, skips that read as skips, and one definition per product."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pyarrow as pa

from dynpose.domain.camera import Intrinsics, PoseResult
from dynpose.domain.poses import POSES_SCHEMA, pose_row
from dynpose.graph import checks
from dynpose.graph.orchestrate import instance_for, materialize
from dynpose.graph.products import PRODUCTS
from dynpose.resources import ExecutorResource, LakeResource
from dynpose.storage.ingest import IngestSettings, Registry, ingest
from dynpose.storage.lake import Lake

RAW = ["clip_catalog", "sampled_frames"]
SETTINGS = checks.CheckSettings()


def _poses(poses: np.ndarray) -> pa.Table:
    n = len(poses)
    result = PoseResult(np.arange(n) / 12.0, poses, np.ones(n, bool), Intrinsics(100, 100, 63.5, 47.5, 128, 96))
    return pa.Table.from_pylist([pose_row("v", "ours", result, range(n))], schema=POSES_SCHEMA)


def test_pose_check_catches_nan_and_non_orthonormal_rotations():
    good = np.tile(np.hstack([np.eye(3), np.zeros((3, 1))]), (4, 1, 1))
    assert checks.valid_poses(_poses(good), None, SETTINGS).passed
    nan = good.copy()
    nan[2, 0, 3] = np.nan
    assert not checks.valid_poses(_poses(nan), None, SETTINGS).passed
    sheared = good.copy()
    sheared[1, 0, 1] = 0.05
    outcome = checks.valid_poses(_poses(sheared), None, SETTINGS)
    assert not outcome.passed and "orthonormal" in outcome.metadata["videos"][0]
    mirrored = good.copy()
    mirrored[3, 2, 2] = -1.0  # orthonormal but a reflection
    assert not checks.valid_poses(_poses(mirrored), None, SETTINGS).passed


def test_schema_and_failed_share_checks():
    schema = pa.schema([("video_id", pa.string()), ("status", pa.string())])
    table = pa.table({"video_id": ["a", "b", "c"], "status": ["ok", "too_short", "unreadable"]})
    assert checks.schema_present(table, schema, SETTINGS).passed
    assert not checks.schema_present(table.drop_columns(["status"]), schema, SETTINGS).passed
    assert not checks.schema_present(table.set_column(1, "status", pa.array([1, 2, 3])), schema, SETTINGS).passed
    share = checks.failed_share(table, schema, SETTINGS)
    assert not share.passed and share.severity == "warn" and share.metadata["failed_share"] == 2 / 3
    assert checks.failed_share(table, schema, checks.CheckSettings(max_failed_share=0.7)).passed


def _run(lake_url: str, selection: list[str], shard: str):
    from dynpose.graph.definitions import ASSETS

    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=shard,
        instance=instance_for(Lake(lake_url)),
        resources={"lake": LakeResource(url=lake_url), "executor": ExecutorResource()},
        raise_on_error=False,
    )


def test_a_corrupted_catalog_fails_its_check_and_a_fresh_shard_is_a_skip(mixed_videos, tmp_path):
    lake_url = str(tmp_path / "lake")
    ingest(str(mixed_videos), Lake(lake_url), IngestSettings())
    materialize(lake_url, select=RAW, progress=False)
    lake = Lake(lake_url)
    shard = Registry(lake).shards()[0]

    fresh = _run(lake_url, RAW, shard)
    assert fresh.success
    assert fresh.get_asset_materialization_events() == []  # nothing was stale: no new materialization
    assert all(c.passed for c in fresh.get_asset_check_evaluations() if c.check_name != "failed_share")

    # Corrupt the stored catalog behind the ledger's back: the same rows twice.
    table = lake.read_table("clip_catalog", shard)
    lake.put_bytes(lake.table_path("clip_catalog", shard), Lake.parquet_bytes(pa.concat_tables([table, table])))
    result = _run(lake_url, ["clip_catalog"], shard)
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not evaluations["unique_video_ids"].passed
    assert evaluations["schema_present"].passed
    # mixed_videos is mostly bad files: the failed-share check warns, it does not fail the run.
    assert not evaluations["failed_share"].passed and evaluations["failed_share"].severity == dg.AssetCheckSeverity.WARN
    assert result.success


def test_a_fresh_product_passes_through_when_its_downstream_is_stale(mixed_videos, tmp_path):
    lake_url = str(tmp_path / "lake")
    ingest(str(mixed_videos), Lake(lake_url), IngestSettings())
    materialize(lake_url, select=RAW, progress=False)
    shard = Registry(Lake(lake_url)).shards()[0]
    settings = tmp_path / "settings.yaml"
    settings.write_text("sampled_frames:\n  fps: 6\n")
    from dynpose.graph.definitions import ASSETS

    result = dg.materialize(
        ASSETS,
        selection=RAW,
        partition_key=shard,
        instance=instance_for(Lake(lake_url)),
        raise_on_error=False,
        resources={"lake": LakeResource(url=lake_url, settings_file=str(settings)), "executor": ExecutorResource()},
    )
    assert result.success
    done = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata["action"].value
        for e in result.get_asset_materialization_events()
    }
    assert done == {"clip_catalog": "skipped", "sampled_frames": "computed"}


def test_every_product_has_one_asset_in_its_group_folder():
    import importlib

    from dynpose.graph.definitions import ASSETS, defs

    for name, product in PRODUCTS.items():
        folder = importlib.import_module(f"dynpose.assets.{product.group}")
        asset = getattr(folder, name, None)
        assert isinstance(asset, dg.AssetsDefinition), f"{name} is not listed in assets/{product.group}/"
        assert asset.group_names_by_key[asset.key] == product.group
    assert sorted(k.to_user_string() for a in ASSETS for k in a.keys) == sorted(PRODUCTS)
    shard_job = defs.resolve_job_def("process_shard")
    assert {k.to_user_string() for k in shard_job.asset_layer.selected_asset_keys} == {
        n for n, p in PRODUCTS.items() if not p.aggregate
    }
    assert {k.to_user_string() for k in defs.resolve_job_def("aggregates").asset_layer.selected_asset_keys} == {
        n for n, p in PRODUCTS.items() if p.aggregate
    }
