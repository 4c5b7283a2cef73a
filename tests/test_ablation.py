"""The annotation ablation benchmark (dynpose.evaluation.ablation) on one tiny synthetic clip."""

from __future__ import annotations

import json
import re
from functools import partial

import numpy as np
import pytest

from dynpose.evaluation import ablation

VARIANTS = {"a": {}, "b": {"sfm": {"obs_per_frame": 200}}}  # SfM differs only: masks and tracks shared


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from dynpose.domain.synth.suites import generate_suite

    out = tmp_path_factory.mktemp("suite")
    generate_suite(out, "tiny", limit=1)
    return out


@pytest.fixture(scope="module")
def run(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    calls = {"masks": 0, "tracks": 0}

    def counted(fn, key):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ablation, "track_grid", counted(ablation.track_grid, "tracks"))
        mp.setattr(ablation, "compute_dynamic_masks", counted(ablation.compute_dynamic_masks, "masks"))
        result = ablation.ablate(suite, VARIANTS, out, log=lines.append)
    return result, out, calls, lines


def test_every_variant_is_scored_on_shared_masks_and_tracks(run):
    result, out, calls, lines = run
    recs = {r["variant"]: r for r in result.records}
    assert set(recs) == {"a", "b"}
    for r in recs.values():
        assert r["status"] == "ok", r.get("message")
        assert np.isfinite(r["ate"]) and r["registered_ratio"] > 0.5
        assert np.isfinite(r["focal_err"]) and 0 <= r["mask_iou"] <= 1
    assert calls == {"masks": 1, "tracks": 1}
    assert len(list((out / "cache").rglob("*.pkl"))) == 1
    assert recs["a"]["tracking_s"] == recs["b"]["tracking_s"]  # one shared computation, timed once
    assert len(lines) == 1 and lines[0].startswith("[1/1] 000_") and "ATE" in lines[0]


def test_tables_report_and_json(run):
    result, out, _, _ = run
    titles = [t for t, _ in result.tables]
    assert titles[:2] == ["Per variant (means over clips unless said)", "Per clip and variant"]
    summary = result.tables[0][1]
    assert [r["variant"] for r in summary] == ["a", "b"]
    assert summary[0]["worst ATE / first"] == 1.0 and summary[0]["clips"] == 1
    assert "gamma AUC" not in summary[0] or np.isfinite(summary[0]["gamma AUC"])  # only when reported
    text = result.report.read_text()
    assert "Reproduce: `dynpose bench annotation" in text and "load " in text and "## Per clip and variant" in text
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["records"]) == 2 and doc["variants"] == VARIANTS
    assert all("_gamma" not in r for r in doc["records"])


def test_unknown_override_names_the_key(suite, tmp_path):
    with pytest.raises(ValueError, match="no_such_setting"):
        ablation.ablate(suite, {"bad": {"sfm": {"no_such_setting": 1}}}, tmp_path)
    with pytest.raises(ValueError, match="nonsense"):
        ablation.variant_config({"nonsense": {}})
    assert ablation.variant_config({"sfm": {"pair_gaps": [1, 2]}}).sfm.pair_gaps == (1, 2)


def test_studies_are_variant_dicts_and_the_cli_help_names_each(capsys):
    assert ablation.STUDIES["baseline"] == {"today": {}}
    assert all(isinstance(v, dict) and v for v in ablation.STUDIES.values())
    from dynpose import cli

    # The help text is written out (importing the ablation module costs the CLI 3 s at start).
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "--help"])
    words = set(re.findall(r"[a-z_]+", capsys.readouterr().out))
    assert all(name in words for name in ablation.STUDIES), words


def test_roc_auc():
    assert ablation.roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert ablation.roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert ablation.roc_auc([1.0, 1.0, 1.0, 1.0], [False, True, False, True]) == 0.5
    assert ablation.roc_auc([0.1, np.nan, 0.9], [False, True, True]) == 1.0  # NaN scores ignored
    assert np.isnan(ablation.roc_auc([0.1, 0.2], [True, True]))  # one class only


def test_cli_smoke(suite, run, capsys):
    from dynpose import cli

    _, out, _, _ = run  # the cached masks and tracks of variant "a" (the defaults) serve "today"
    assert cli.main(["bench", "annotation", "--suite", str(suite), "--study", "baseline", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Per variant" in printed and "today" in printed and "report.md" in printed
    (rec,) = json.loads((out / "results.json").read_text())["records"]
    assert rec["status"] == "ok" and rec["cached"] is True  # a rerun on the same OUT reuses them
    with pytest.raises(SystemExit, match="unknown study"):
        cli.main(["bench", "annotation", "--suite", str(suite), "--study", "nope", "--out", str(out)])


def test_gamma_points_are_labelled_by_the_ground_truth_ids_at_their_query_point():
    from types import SimpleNamespace

    from dynpose.domain.annotate.tracking import Tracklets, TrackWindow
    from dynpose.domain.camera import Intrinsics
    from dynpose.evaluation.ground_truth import GroundTruth

    ids = np.zeros((8, 16), np.uint8)  # ground truth at twice the annotated size, object on the right
    ids[:, 8:] = 3
    pts = np.array([[[1.0, 1.0], [6.0, 2.0], [2.0, 3.0]]], np.float32)  # (T=1, P=3, 2) at 8 x 4
    win = TrackWindow(0, np.array([0]), pts, np.ones((1, 3), bool))
    ann = SimpleNamespace(
        tracklets=Tracklets([win], 1, 8, 4),
        poses=SimpleNamespace(extra={"track_gamma": [np.array([0.5, 9.0, np.nan])]}),
        width=8,
        height=4,
        source_indices=np.array([5]),
    )
    gt = SimpleNamespace(
        poses=SimpleNamespace(intrinsics=Intrinsics(10, 10, 7.5, 3.5, 16, 8)), object_ids=lambda i: ids
    )
    gt.object_at = partial(GroundTruth.object_at, gt)  # the real lookup over this ground truth's ids
    gt.object_speeds = lambda frame: {3: 1.0}
    scores, labels, still = ablation._gamma_points(ann, gt)
    assert scores.tolist() == [0.5, 9.0] and labels.tolist() == [False, True] and not still.any()
    assert ablation.roc_auc(scores, labels) == 1.0 == ablation._moving_auc(scores, labels, still)
    gt.object_speeds = lambda frame: {3: 0.5 * ablation.MOVING_SPEED}  # the object stands still
    scores, labels, still = ablation._gamma_points(ann, gt)
    assert still.tolist() == [False, True] and np.isnan(ablation._moving_auc(scores, labels, still))


def test_object_speed_comes_from_the_generators_object_centres():
    from types import SimpleNamespace

    from dynpose.evaluation.ground_truth import GroundTruth

    # 5 frames 0.25 s apart; object 1 walks 0.5 m/s along x, object 2 stands (its centre does not move)
    centres = {"1": [[0.125 * t, 2.0, 0.9] for t in range(5)], "2": [[1.0, 1.0, 0.9]] * 5}
    gt = SimpleNamespace(poses=SimpleNamespace(timestamps=np.arange(5) * 0.25), meta={"object_centres": centres})
    speeds = GroundTruth.object_speeds(gt, 2, seconds=0.5)
    assert speeds == {1: pytest.approx(0.5), 2: 0.0}
    gt.meta = {}  # a suite rendered before the centres were written: nothing known
    assert GroundTruth.object_speeds(gt, 2) == {}
