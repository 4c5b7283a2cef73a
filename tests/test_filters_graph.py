"""The filtering cascade in the graph: a row per video in every filter table whatever the file,
the staged decision, and annotation only for the kept videos."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest

from dynpose.cli import main as cli_main
from dynpose.domain.filters.cascade import FILTERS, STAGES, CascadeSettings, decide, reaches
from dynpose.domain.synth import generate_suite
from dynpose.domain.synth.io import encode_mp4
from dynpose.storage.lake import Lake

FILTER_TABLES = [f"filter_{n}" for n in FILTERS]


def _vfr_mp4(path, frames: np.ndarray) -> None:
    """H.264 with irregular frame intervals (variable frame rate)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(30))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.time_base = Fraction(1, 90000)
        t = 0
        for k, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 90000)
            t += 3000 if k % 3 else 9000  # 30 fps with a 10 fps gap every third frame
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _audio_only(path) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _rotated(path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(12))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.metadata["rotate"] = "90"
        for k, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = k
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    generate_suite(out, "tiny", seed=0)
    return out


def test_every_file_gets_a_row_in_every_filter_table_and_only_kept_videos_are_annotated(tmp_path, tiny_suite):
    src = tmp_path / "videos"
    src.mkdir()
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (24, 96, 128, 3), dtype=np.uint8)
    (src / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 255, 4000, dtype=np.uint8)))
    (src / "empty.mp4").write_bytes(b"")
    encode_mp4(src / "one_frame.mp4", texture[:1], 12)
    encode_mp4(src / "huge.mp4", np.zeros((12, 16, 7702, 3), np.uint8), 12)  # wider than 8K
    _rotated(src / "rotated.mp4", texture)
    _vfr_mp4(src / "vfr.mp4", texture)
    _audio_only(src / "audio_only.mp4")
    for clip in sorted(tiny_suite.glob("*.mp4")):
        shutil.copy(clip, src / clip.name)
    shutil.copy(tiny_suite / "labels.csv", src / "labels.csv")
    lake_url = str(tmp_path / "lake")
    assert cli_main(["--lake", lake_url, "ingest", str(src)]) == 0
    assert cli_main(["--lake", lake_url, "materialize", "--quiet"]) == 0
    lake = Lake(lake_url)
    names = {r["video_id"]: r["source_uri"].rsplit("/", 1)[-1] for r in lake.read_product("clip_catalog").to_pylist()}
    catalog = {names[r["video_id"]]: r["status"] for r in lake.read_product("clip_catalog").to_pylist()}
    assert catalog["empty.mp4"] == "empty" and catalog["huge.mp4"] == "too_large"
    assert catalog["audio_only.mp4"] == "no_video_stream" and catalog["corrupt.mp4"] == "unreadable"
    for table in FILTER_TABLES:
        rows = {names[r["video_id"]]: r for r in lake.read_product(table).to_pylist()}
        assert set(rows) == set(catalog), table  # one row per catalogued video, whatever the file
        for name, status in catalog.items():
            if status != "ok":
                assert rows[name]["status"] == status and rows[name]["score"] is None, (table, name)
            else:
                assert (rows[name]["score"] is None) == (rows[name]["status"] != "ok"), (table, name, rows[name])
    decisions = {names[r["video_id"]]: r for r in lake.read_product("filter_decisions").to_pylist()}
    assert set(decisions) == set(catalog)
    assert all(not d["kept"] and d["stage_left"] == "catalog" for n, d in decisions.items() if catalog[n] != "ok")
    kept = {n for n, d in decisions.items() if d["kept"]}
    rejected_ok = {n for n, d in decisions.items() if not d["kept"] and catalog[n] == "ok"}
    assert all(d["reason"] for d in decisions.values())

    # Annotation: poses computed for the kept videos only; the rejected ones say so.
    poses = {names[r["video_id"]]: r for r in lake.read_product("camera_poses").to_pylist()}
    assert {n for n, r in poses.items() if r["status"] != "filtered_out"} == kept
    assert {n for n, r in poses.items() if r["status"] == "filtered_out"} == rejected_ok
    masks = {names[r["video_id"]]: r["status"] for r in lake.read_product("dynamic_masks").to_pylist()}
    assert {n for n, s in masks.items() if s != "filtered_out"} == kept
    assert {"one_frame.mp4"} & kept == set()


def test_the_cascade_stops_at_the_first_stage_below_its_threshold():
    cfg = CascadeSettings(stage_thresholds=(0.5, 0.5, 0.5, 0.5, 0.5), final_threshold=0.8)
    good = {n: 0.95 for n in FILTERS}
    assert decide(good, cfg).kept
    early = dict(good, content=0.1, flow=0.1, focal=0.2)
    d = decide(early, cfg)
    assert not d.kept and d.stage_left == "+".join(STAGES[0]) and "content" in d.reason
    assert not reaches(early, 1, cfg) and reaches(good, 4, cfg)
    late = dict(good, masking=0.0, vlm=None)  # passes the partial means, fails the final mean
    d = decide(late, cfg, statuses={"vlm": "skipped"})
    assert d.stage_left in ("masking", "final") and not d.kept
    assert "not scored: vlm (skipped)" in d.reason
    unscored = dict(good, distortion=None)  # a filter that could not score does not count
    assert decide(unscored, cfg).kept and "distortion" in decide(unscored, cfg).reason
    assert decide({}, cfg).reason == "no filter could score this video"
    assert decide(good, cfg, "unreadable").stage_left == "catalog"


def test_filter_command_scores_one_video_without_dagster(tiny_suite, capsys):
    clip = sorted(tiny_suite.glob("*.mp4"))[0]
    code = cli_main(["filter", str(clip), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["filters"]) == set(FILTERS)
    assert all(f["seconds"] >= 0 for f in out["filters"].values())
    assert code == (0 if out["decision"]["kept"] else 3)


def test_table5_rows_and_a_tuned_cascade_on_known_scores():
    from dynpose.evaluation.filters import Labelled, benchmark_rows, tune_cascade

    rng = np.random.default_rng(0)
    videos, scores = [], {}
    for i in range(40):
        good = i < 10
        videos.append(Labelled(f"v{i}", int(good), "suitable" if good else "tripod"))
        # flow separates the classes, the others are noise: the ablation must show flow's gain
        scores[f"v{i}"] = {n: float(rng.uniform(0.8, 1.0)) for n in FILTERS}
        scores[f"v{i}"]["flow"] = float(rng.uniform(0.9, 1.0) if good else rng.uniform(0.0, 0.6))
    decisions = {
        v.video_id: {"kept": scores[v.video_id]["flow"] > 0.85, "score": 0.5, "stage_left": None} for v in videos
    }
    rows = benchmark_rows(videos, scores, {}, decisions)
    by = {(r["kind"], r["name"]): r for r in rows}
    assert by[("alone", "flow")]["average_precision"] == 1.0
    assert by[("cumulative", "+flow")]["average_precision"] > by[("cumulative", "content")]["average_precision"]
    assert by[("cascade", "cascade")]["precision_kept"] == 1.0 and by[("cascade", "cascade")]["recall_kept"] == 1.0
    tuned, fit = tune_cascade(videos, scores)
    assert fit["precision"] == 1.0 and fit["recall"] >= 0.4
    kept = [v for v in videos if decide(scores[v.video_id], tuned).kept]
    assert kept and all(v.suitable for v in kept) and len(kept) == fit["kept"]
