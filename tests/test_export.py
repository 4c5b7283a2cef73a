"""Export of quality-filtered subsets: the dynpose release layout, native Parquet, webdataset tars,
the manifest, resumability after a kill, incremental re-export, S3, the CLI and the Dagster job.

One lake for the module: the tiny synthetic suite (3 videos, 2 per shard) through the annotation
graph with every video annotated. The test that adds a video to it runs last.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import tarfile
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from dynpose import export as ex
from dynpose.benchmarks import export_base_lake
from dynpose.domain.camera import read_cameras_pkl, write_cameras_pkl
from dynpose.domain.filters.cascade import FILTERS as CASCADE_FILTERS
from dynpose.domain.poses import pose_from_row
from dynpose.graph.orchestrate import materialize
from dynpose.graph.settings import IngestSettings
from dynpose.storage.ingest import ingest
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import Ledger

FILTERS = [f"filter_{n}" for n in CASCADE_FILTERS] + ["filter_decisions"]
ANNOTATION = ["clip_catalog", *FILTERS, "sampled_frames", "dynamic_masks", "tracklets", "camera_poses", "pose_quality"]
EVERYTHING = ex.Selection(tiers=None, min_registered=None)  # every annotated video


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(lake url, settings file, suite folder): the tiny suite ingested two videos a shard, annotated
    (the same lake `dynpose bench export` scales up)."""
    root = tmp_path_factory.mktemp("export")
    (root / "dagster_home").mkdir()
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        env.setenv("DYNPOSE_CACHE", str(root / "cache"))
        lake_url = export_base_lake(root, log=lambda _msg: None)
    return lake_url, str(root / "base" / "annotate_all.yaml"), root / "base" / "tiny"


@pytest.fixture
def lake(built) -> Lake:
    return Lake(built[0])


def _ours(lake: Lake) -> dict[str, dict]:
    return {r["video_id"]: r for r in lake.read_product("camera_poses").to_pylist() if r["method"] == "ours"}


def _nan_free(rows: list[dict]) -> list[dict]:
    """NaN as None, also inside lists (``track_gamma``), so that equal rows compare equal (NaN != NaN)."""

    def clean(v):
        if isinstance(v, list):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and v != v else v

    return [{k: clean(v) for k, v in r.items()} for r in rows]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_manifest_checksums(dest: Path) -> dict:
    manifest = json.loads((dest / "manifest.json").read_text())
    visible = {
        str(p.relative_to(dest))
        for p in dest.rglob("*")
        if p.is_file() and not str(p.relative_to(dest)).startswith(("_export", "manifest.json"))
    }
    assert visible == set(manifest["files"])  # nothing more, nothing less
    for rel, entry in manifest["files"].items():
        assert _sha(dest / rel) == entry["sha256"], rel
        assert (dest / rel).stat().st_size == entry["bytes"], rel
    assert manifest["counts"]["files"] == len(manifest["files"])
    return manifest


def test_dynpose_format_cameras_equal_the_lake_poses(lake, tmp_path):
    dest = tmp_path / "release"
    report = ex.export(lake, str(dest), EVERYTHING, fmt="dynpose")
    ours = _ours(lake)
    assert len(ours) == 3 and report.videos == 3 and report.shards == 2
    assert {p.stem for p in (dest / "cameras").glob("*.pkl")} == set(ours)
    for vid, row in ours.items():
        path = dest / "cameras" / f"{vid}.pkl"
        got, want = read_cameras_pkl(path), pose_from_row(row)
        assert np.array_equal(got.poses_w2c, want.poses_w2c)
        assert np.array_equal(got.timestamps, want.timestamps)
        assert np.array_equal(got.registered, want.registered)
        assert got.intrinsics == want.intrinsics
        # Byte for byte what write_cameras_pkl writes, and the plain-pickle keys of the release.
        write_cameras_pkl(tmp_path / "ref.pkl", want)
        assert path.read_bytes() == (tmp_path / "ref.pkl").read_bytes()
        d = pickle.loads(path.read_bytes())
        assert set(d) == {"poses", "intrinsics", "width", "height", "timestamps", "registered"}
        assert d["poses"].shape == (row["n_frames"], 3, 4) and d["intrinsics"].shape == (row["n_frames"], 4)

    quality = {r["video_id"]: r for r in lake.read_product("pose_quality").to_pylist()}
    decisions = {r["video_id"]: r for r in lake.read_product("filter_decisions").to_pylist()}
    catalog = {r["video_id"]: r for r in lake.read_product("clip_catalog").to_pylist()}
    rows = list(csv.DictReader(io.StringIO((dest / "metadata.csv").read_text())))
    assert sorted(r["video_id"] for r in rows) == sorted(ours)
    for r in rows:
        vid = r["video_id"]
        assert r["tier"] == quality[vid]["tier"] and r["source_uri"] == catalog[vid]["source_uri"]
        assert float(r["registered_ratio"]) == quality[vid]["registered_ratio"]
        if decisions[vid]["score"] is not None:
            assert float(r["filter_score"]) == decisions[vid]["score"]

    manifest = _check_manifest_checksums(dest)
    assert manifest["format"] == "dynpose" and sorted(manifest["videos"]) == sorted(ours)
    ledger = Ledger(lake)
    for product in ("camera_poses", "pose_quality", "clip_catalog", "filter_decisions"):
        for shard, version in manifest["data_versions"][product].items():
            assert version == ledger.state(product, shard).data_version
    assert "tier IN" not in manifest["selection"]["sql"]

    # Again, nothing changed: nothing is written, not even the manifest.
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    again = ex.export(lake, str(dest), EVERYTHING, fmt="dynpose")
    assert again.written == [] and again.removed == [] and again.unchanged == len(manifest["files"])
    assert before == {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}

    # A narrower selection removes the files of the videos it drops, and only those.
    keep = sorted(ours)[0]
    narrow = ex.export(lake, str(dest), ex.Selection(tiers=None, min_registered=None, where=f"video_id = '{keep}'"))
    assert narrow.videos == 1 and {p.stem for p in (dest / "cameras").glob("*.pkl")} == {keep}
    assert sorted(narrow.removed) == sorted(f"cameras/{v}.pkl" for v in ours if v != keep)
    _check_manifest_checksums(dest)


def test_selection_thresholds_and_where(lake):
    quality = {r["video_id"]: r for r in lake.read_product("pose_quality").to_pylist()}
    decisions = {r["video_id"]: r for r in lake.read_product("filter_decisions").to_pylist()}
    ids = lambda sel: sorted(r["video_id"] for r in ex.select(lake, sel).to_pylist())  # noqa: E731
    assert sorted(ids(EVERYTHING)) == sorted(quality)
    # The defaults: tier1-3 and at least 80% registered.
    want = sorted(
        v for v, q in quality.items() if q["tier"] in ("tier1", "tier2", "tier3") and q["registered_ratio"] >= 0.8
    )
    assert sorted(ids(ex.Selection())) == want
    cut = sorted(d["score"] for d in decisions.values() if d["score"] is not None)[-1]
    assert ids(ex.Selection(min_filter_score=cut, tiers=None, min_registered=None)) == [
        v for v, d in sorted(decisions.items()) if d["score"] is not None and d["score"] >= cut
    ]
    some = sorted(quality)[1]
    assert ids(ex.Selection(tiers=None, min_registered=None, where=f"video_id = '{some}' AND n_frames > 0")) == [some]
    assert ids(ex.Selection(tiers=("tier1",), min_registered=None)) == [
        v for v, q in sorted(quality.items()) if q["tier"] == "tier1"
    ]

    for bad, says in [
        ("true; DROP TABLE candidates", "not a SQL expression"),
        ("1 = 1) UNION (SELECT 1", "read-only boolean expression"),
        ("true) GROUP BY (video_id", "read-only boolean expression"),
        ("true) LIMIT (1", "read-only boolean expression"),
        ("video_id IN (SELECT * FROM read_csv('/etc/passwd'))", "could not be evaluated"),
        ("no_such_column > 1", "could not be evaluated"),
    ]:
        with pytest.raises(ex.ExportError, match=says):
            ex.select(lake, ex.Selection(where=bad))
    with pytest.raises(ex.ExportError, match="unknown tier"):
        ex.select(lake, ex.Selection(tiers=("gold",)))
    assert ex.parse_tiers("any") is None and ex.parse_tiers("tier1, tier2") == ("tier1", "tier2")


def test_parquet_format_holds_the_product_rows(lake, tmp_path):
    dest = tmp_path / "native"
    keep = sorted(_ours(lake))[:2]
    where = "video_id IN (" + ", ".join(f"'{v}'" for v in keep) + ")"
    ex.export(lake, str(dest), ex.Selection(tiers=None, min_registered=None, where=where), fmt="parquet")
    manifest = _check_manifest_checksums(dest)
    import pyarrow.parquet as pq

    for product in ANNOTATION:
        parts = sorted((dest / "tables" / product).glob("shard=*/data.parquet"))
        assert parts, product
        got = [r for p in parts for r in pq.ParquetFile(p).read().to_pylist()]  # no hive column
        want = [r for r in lake.read_product(product).to_pylist() if r["video_id"] in keep]
        key = lambda r: (r["video_id"], r.get("frame_index", 0), r.get("method", ""))  # noqa: E731
        assert _nan_free(sorted(got, key=key)) == _nan_free(sorted(want, key=key)), product
    for table in ("dynamic_masks", "tracklets"):
        rows = [
            r
            for p in (dest / "arrays" / table).glob("shard=*/data.parquet")
            for r in pq.ParquetFile(p).read().to_pylist()
        ]
        assert rows and {r["video_id"] for r in rows} <= set(keep)
    assert manifest["counts"]["videos"] == 2


def _read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            samples[key][ext] = tar.extractfile(m).read()
    return samples


def test_webdataset_tars_hold_what_the_manifest_says(lake, tmp_path):
    import cv2

    dest = tmp_path / "wds"
    report = ex.export(lake, str(dest), EVERYTHING, fmt="webdataset", with_frames=True)
    manifest = _check_manifest_checksums(dest)
    ours = _ours(lake)
    masks = {r["video_id"]: r for r in lake.read_product("dynamic_masks").to_pylist()}
    tars = sorted(dest.glob("shards/*.tar"))
    assert [t.name for t in tars] == ["s00000.tar", "s00001.tar"] and report.videos == 3
    seen = []
    for tar in tars:
        entry = manifest["files"][f"shards/{tar.name}"]
        samples = _read_tar(tar)
        assert sorted(samples) == sorted(entry["samples"])
        assert sum(len(s) for s in samples.values()) == entry["members"]
        for vid, sample in samples.items():
            row, want = ours[vid], pose_from_row(ours[vid])
            assert np.array_equal(np.load(io.BytesIO(sample["poses.npy"])), want.poses_w2c)
            assert np.array_equal(np.load(io.BytesIO(sample["registered.npy"])), want.registered)
            assert np.load(io.BytesIO(sample["intrinsics.npy"]))[0].tolist() == [
                row["fx"],
                row["fy"],
                row["cx"],
                row["cy"],
            ]
            assert pickle.loads(sample["cameras.pkl"])["poses"].tolist() == want.poses_w2c.tolist()
            meta = json.loads(sample["json"])
            assert meta["tier"] is not None and meta["intrinsics"]["width"] == row["width"]
            assert json.loads(sample["masks.json"])["mean_union_coverage"] == masks[vid]["mean_union_coverage"]
            jpgs = sorted(k for k in sample if k.endswith(".jpg"))
            assert len(jpgs) == row["n_frames"] == meta["frames"]
            img = cv2.imdecode(np.frombuffer(sample[jpgs[0]], np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (row["height"], row["width"], 3)
            seen.append(vid)
    assert sorted(seen) == sorted(manifest["videos"]) == sorted(ours)
    with pytest.raises(ex.ExportError, match="holds a webdataset export"):
        ex.export(lake, str(dest), EVERYTHING, fmt="dynpose")


def test_a_killed_export_leaves_no_partial_file_and_the_rerun_completes(lake, tmp_path, monkeypatch):
    dest = tmp_path / "killed"
    real_jpeg, calls = ex._jpeg, {"n": 0}

    n_first = sum(r["n_frames"] for r in lake.read_table("camera_poses", "s00000").to_pylist())

    def dies_midway(frame):
        calls["n"] += 1
        if calls["n"] == n_first + 3:  # inside the second shard's tar
            raise KeyboardInterrupt("killed")
        return real_jpeg(frame)

    monkeypatch.setattr(ex, "_jpeg", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ex.export(lake, str(dest), EVERYTHING, fmt="webdataset", with_frames=True)
    names = [p.name for p in dest.rglob("*") if p.is_file()]
    assert not any(".tmp-" in n for n in names), names  # the temporary tar went with the exception
    assert "s00001.tar" not in names and "manifest.json" not in names
    # The finished shard is whole and readable.
    assert len(_read_tar(dest / "shards" / "s00000.tar")) == 2

    # A hard kill leaves a hidden temporary behind: never visible as data, removed by the next run.
    (dest / "shards" / ".s00001.tar.tmp-deadbeef").write_bytes(b"half a tar")
    monkeypatch.setattr(ex, "_jpeg", real_jpeg)
    rerun = ex.export(lake, str(dest), EVERYTHING, fmt="webdataset", with_frames=True)
    assert "shards/s00000.tar" not in rerun.written  # resumed: the finished shard was kept
    assert "shards/s00001.tar" in rerun.written
    assert not [p for p in dest.rglob("*") if ".tmp-" in p.name]
    manifest = _check_manifest_checksums(dest)
    assert len(_read_tar(dest / "shards" / "s00001.tar")) == 1 and manifest["counts"]["videos"] == 3


def test_cli_export_and_the_dagster_job(built, tmp_path, capsys):
    from dynpose.cli import main
    from dynpose.resources import LakeResource
    from dynpose.sensors import JOBS
    from dynpose.sensors.export import export_job

    lake_url, settings, _suite = built
    dest = tmp_path / "cli"
    args = ["--lake", lake_url, "--settings", settings, "export", "--dest", str(dest), "--tiers", "any"]
    assert main([*args, "--min-registered", "0"]) == 0
    out = capsys.readouterr().out
    assert f"manifest: {dest / 'manifest.json'}" in out and "videos/s" in out and "tier" in out
    assert len(list((dest / "cameras").glob("*.pkl"))) == 3
    assert main([*args, "--where", "1; select 2"]) == 2
    assert "not a SQL expression" in capsys.readouterr().err

    assert export_job in JOBS
    job_dest = tmp_path / "job"
    result = export_job.execute_in_process(
        run_config={"ops": {"export_subset": {"config": {"dest": str(job_dest), "format": "parquet", "tiers": None}}}},
        resources={"lake": LakeResource(url=lake_url, settings_file=settings)},
    )
    assert result.success
    assert result.output_for_node("export_subset")["manifest"] == str(job_dest / "manifest.json")
    assert _check_manifest_checksums(job_dest)["format"] == "parquet"


@pytest.mark.s3
def test_export_to_s3(lake, s3_server):
    dest = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:10]}/export"
    report = ex.export(lake, dest, EVERYTHING, fmt="dynpose")
    fs = s3_server.filesystem()
    root = dest.removeprefix("s3://")
    manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    assert report.manifest == f"{dest}/manifest.json" and manifest["counts"]["videos"] == 3
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256(fs.cat_file(f"{root}/{rel}")).hexdigest() == entry["sha256"], rel
    for vid, row in _ours(lake).items():
        d = pickle.loads(fs.cat_file(f"{root}/cameras/{vid}.pkl"))
        assert np.array_equal(d["poses"], pose_from_row(row).poses_w2c)
    assert not [p for p in fs.find(root) if ".tmp-" in p]
    assert ex.export(lake, dest, EVERYTHING, fmt="dynpose").written == []  # idempotent on S3 too
    wds = ex.export(lake, dest + "-wds", EVERYTHING, fmt="webdataset")
    assert sorted(wds.written) == ["manifest.json", "shards/s00000.tar", "shards/s00001.tar"]


def test_the_export_benchmark_lake_replicates_the_annotated_rows(built, lake, tmp_path):
    """`dynpose bench export` scales the lake up: 2 shards x 4 copies of the annotated videos, under new
    ids, pointing at the real videos; they export whole and a rerun writes nothing."""
    from dynpose.benchmarks import scale_lake

    url = str(tmp_path / "scaled")
    assert scale_lake(built[0], url, shards=2, per_shard=4) == 8
    scaled = Lake(url)
    assert scaled.product_shards("camera_poses") == ["s00000", "s00001"]
    assert Ledger(scaled).state("camera_poses", "s00001").rows == scaled.read_table("camera_poses", "s00001").num_rows
    rows = ex.select(scaled, EVERYTHING).to_pylist()
    originals = {r["source_uri"] for r in ex.select(lake, EVERYTHING).to_pylist()}
    assert len({r["video_id"] for r in rows}) == 8 and {r["source_uri"] for r in rows} == originals
    first = ex.export(url, str(tmp_path / "wds"), EVERYTHING, fmt="webdataset")
    assert (first.videos, first.shards) == (8, 2)
    assert ex.export(url, str(tmp_path / "wds"), EVERYTHING, fmt="webdataset").written == []


def test_a_second_export_after_new_videos_writes_only_those(built, lake, tmp_path):
    """Runs last: it adds a video to the module's lake."""
    from dynpose.domain.synth.io import encode_mp4
    from dynpose.domain.video import probe, sample_frames

    lake_url, settings, suite = built
    dest = tmp_path / "release"
    first = ex.export(lake, str(dest), EVERYTHING, fmt="dynpose")
    before = {p.name: p.stat().st_mtime_ns for p in (dest / "cameras").glob("*.pkl")}
    assert first.videos == 3 and len(before) == 3

    # A new clip arrives: the first one re-encoded (other bytes, so another video), in a new shard.
    clip = sorted(suite.glob("*.mp4"))[0]
    new_src = tmp_path / "arrivals"
    new_src.mkdir()
    encode_mp4(new_src / "reencoded.mp4", sample_frames(str(clip), fps=0).frames, probe(str(clip)).fps, crf=28)
    assert ingest(str(new_src), lake, IngestSettings(shard_size=2)).new_shards == ["s00002"]
    outcomes = materialize(lake_url, settings, select=ANNOTATION, progress=False)
    assert not [o for o in outcomes if o.action == "failed"]
    new = sorted(set(_ours(lake)) - {n.removesuffix(".pkl") for n in before})
    assert len(new) == 1

    second = ex.export(lake, str(dest), EVERYTHING, fmt="dynpose")
    assert sorted(second.written) == sorted([f"cameras/{new[0]}.pkl", "metadata.csv", "manifest.json"])
    assert second.shards_written == 1 and second.videos == 4
    after = {p.name: p.stat().st_mtime_ns for p in (dest / "cameras").glob("*.pkl")}
    assert {k: after[k] for k in before} == before  # the old files were not touched
    manifest = _check_manifest_checksums(dest)
    assert set(manifest["shards"]) == {"s00000", "s00001", "s00002"}
    assert len(list(csv.DictReader(io.StringIO((dest / "metadata.csv").read_text())))) == 4
