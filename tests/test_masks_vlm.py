"""DynaPo's VLM mask component (dynpose.domain.annotate.masks_vlm): the strict object parser, boxes
to masks, the component in compute_dynamic_masks and its ablation, and the request against the
local test server's oracle."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dynpose.domain.annotate import masks_vlm as mv
from dynpose.domain.annotate.masks import VLM, MaskConfig, compute_dynamic_masks, detection_frames
from dynpose.domain.status import Status
from dynpose.domain.vlm_client import VlmEndpoint
from dynpose.evaluation.vlm_server import vlm_server
from dynpose.storage.lake import Lake
from dynpose.storage.vlm_cache import VlmCache
from tests.test_masks import _texture, iou, synthetic_clip

KEY_ENV = "DYNPOSE_TEST_VLM_KEY"


def _answer(frames: list[list[dict]]) -> str:
    return json.dumps({"frames": [{"image": k, "objects": objs} for k, objs in enumerate(frames, 1)]})


PERSON = {"label": "person", "box": [100, 200, 300, 900]}


def test_parse_objects_reads_the_schema_and_maps_images():
    parsed = mv.parse_objects(_answer([[PERSON], []]), 2)
    assert parsed == {0: [mv.VlmObject("person", (100, 200, 300, 900))], 1: []}


@pytest.mark.parametrize(
    "content",
    [
        "Sure, a person at the left.",  # not JSON
        _answer([[PERSON]]),  # one image of two
        _answer([[PERSON], [], []]),  # three of two
        json.dumps({"frames": [{"image": 1, "objects": []}, {"image": 1, "objects": []}]}),  # image twice
        json.dumps({"frames": [{"image": 0, "objects": []}, {"image": 1, "objects": []}]}),  # numbered from 0
        _answer([[{"label": "person", "box": [300, 200, 100, 900]}], []]),  # x0 > x1
        _answer([[{"label": "person", "box": [100, 200, 300, 1001]}], []]),  # out of range
        _answer([[{"label": "person", "box": [100.5, 200, 300, 900]}], []]),  # not integers
        _answer([[{"label": "person", "box": [True, 200, 300, 900]}], []]),  # a bool is not a coordinate
        _answer([[{"label": "", "box": [100, 200, 300, 900]}], []]),  # no label
        _answer([[{**PERSON, "confidence": 0.9}], []]),  # a key the schema does not have
        json.dumps({"frames": [], "note": "x"}),
    ],
)
def test_parse_objects_rejects_anything_else(content):
    assert mv.parse_objects(content, 2) is None


def test_keyframes_are_evenly_spread_and_capped():
    detected = list(range(0, 60, 6))  # 10 detection frames
    assert mv.keyframes(detected, 16) == detected
    picked = mv.keyframes(detected, 4)
    assert len(picked) == 4 and picked[0] == 0 and picked[-1] == 54 and picked == sorted(picked)
    assert mv.keyframes(detected, 0) == []


def test_boxes_from_ids_cover_each_object():
    ids = np.zeros((120, 200), np.uint16)
    ids[10:40, 20:60] = 1
    ids[80:110, 150:190] = 2
    ids[0:2, 0:2] = 3  # too small to report
    objects = mv.boxes_from_ids(ids, ["person", "car", "ball"])
    assert [o.label for o in objects] == ["person 1", "car 2"]
    for oid, obj in zip((1, 2), objects):
        x0, y0, x1, y1 = mv.box_pixels(obj.box, *ids.shape)
        inside = mv.box_mask((x0, y0, x1, y1), ids.shape)
        assert inside[ids == oid].all()  # the box holds the whole object
        assert inside.sum() <= 1.1 * (ids == oid).sum() + 2 * (x1 - x0 + y1 - y0)  # and little more


def _object_scene(seed: int = 0):
    """A textured background with a differently coloured disc: (img, disc mask, its box in 0-1000)."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    img = _texture(rng, h, w)
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (170, 120), 50, 1, -1)
    img[disc > 0] = _texture(rng, h, w, (0.3, 1.0, 0.4))[disc > 0]
    box = mv.boxes_from_ids(disc.astype(np.uint16))[0].box
    return img, disc > 0, box


def test_grabcut_from_a_box_beats_the_bare_box():
    img, truth, box = _object_scene()
    obj = [mv.VlmObject("disc", box)]
    bare = mv.segment_objects(img, obj, "box")
    cut = mv.segment_objects(img, obj, "grabcut")
    assert iou(bare, truth) < 0.82  # a disc fills pi/4 of its box
    assert iou(cut, truth) > iou(bare, truth) + 0.08
    assert not (cut & ~mv.box_mask(mv.box_pixels(box, *truth.shape), truth.shape)).any()  # never past the box


def test_motion_modes_combine_inside_the_box_only():
    img, truth, box = _object_scene()
    motion = np.zeros_like(truth)
    motion[:, :40] = True  # motion far outside the box
    motion[100:140, 150:190] = True  # and inside it
    obj = [mv.VlmObject("disc", box)]
    bare = mv.segment_objects(img, obj, "box")
    anded = mv.segment_objects(img, obj, "box", motion, "and")
    assert anded.sum() == (motion & bare).sum() and not anded[:, :40].any()
    assert (mv.segment_objects(img, obj, "box", motion, "or") == bare).all()  # the box holds its motion


def test_vlm_component_joins_the_union_and_the_ablation_is_the_plain_run():
    frames, truth = synthetic_clip(n=13)
    cfg = MaskConfig(semantic=False, interaction=False)
    plain = compute_dynamic_masks(frames, cfg)
    assert plain.union_no_vlm is None and VLM not in plain.components
    # A perfect model's boxes on the detection frames
    objects = {int(i): mv.boxes_from_ids(truth[i].astype(np.uint16), ["disc"]) for i in detection_frames(13, cfg)}
    with_vlm = compute_dynamic_masks(frames, cfg, objects)
    assert (with_vlm.union_no_vlm == plain.union).all()  # the ablation is exactly the run without objects
    for i in objects:
        assert iou(with_vlm.components[VLM][i], truth[i]) > 0.7
    recall = lambda m: (m & truth).sum() / truth.sum()  # noqa: E731
    assert recall(with_vlm.union) >= recall(plain.union)
    assert with_vlm.union[list(objects)][with_vlm.components[VLM][list(objects)]].all()  # it is in the union
    with pytest.raises(ValueError, match="not detection frames"):
        compute_dynamic_masks(frames, cfg, {1: []})


def test_ask_objects_against_the_oracle_then_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    frames, truth = synthetic_clip(n=13)
    cfg = MaskConfig()
    picks = mv.keyframes(detection_frames(13, cfg), 2)
    source = [10 * i for i in range(13)]  # the oracle answers by source frame number
    keys = mv.key_frames(frames, picks, source, [i / 12 for i in range(13)], 256)
    truth_objects = {
        source[i]: [{"label": "disc", "box": list(mv.boxes_from_ids(truth[i].astype(np.uint16))[0].box)}] for i in picks
    }
    cache = VlmCache(Lake(str(tmp_path / "lake")))
    with vlm_server("oracle", labels={"vid-1": {"objects": truth_objects}}) as server:
        endpoint = VlmEndpoint(base_url=server.base_url, model="test-vlm", api_key_env=KEY_ENV, requests_per_minute=0)
        reply = mv.ask_objects(keys, "vid-1", endpoint, cache=cache)
        assert reply.status == Status.ok and not reply.cached and server.requests == 1
        assert set(reply.answer) == set(picks)  # keyed by sampled-frame index
        assert [o.box for o in reply.answer[picks[1]]] == [tuple(truth_objects[source[picks[1]]][0]["box"])]
        assert len(server.bodies[0]["messages"][-1]["content"]) == 1 + len(picks)  # text + one image each
        again = mv.ask_objects(keys, "vid-1", endpoint, cache=cache)
        assert again.cached and again.answer == reply.answer and server.requests == 1
        server.set(mode="garbage")
        bad = mv.ask_objects(keys, "vid-1", endpoint, prompt_version="2", cache=cache)
        assert bad.status == Status.vlm_bad_answer and bad.answer is None and server.requests == 2


@pytest.fixture(scope="module")
def one_clip(tmp_path_factory):
    from dynpose.domain.synth import generate_suite

    out = tmp_path_factory.mktemp("tiny_vlm")
    generate_suite(out, "tiny", seed=0)
    video = sorted(out.glob("*.mp4"))[0]
    return {"video_id": "clip-1", "source_uri": str(video)}


def test_a_vlm_fault_never_fails_the_video_and_leaves_its_masks_as_without(one_clip, tmp_path, monkeypatch):
    from dynpose.domain.annotate.decisions import AnnotationChecks
    from dynpose.domain.catalog import FrameSettings
    from dynpose.graph.steps import stages

    monkeypatch.setenv(KEY_ENV, "sk-test")
    frames, checks, cfg = FrameSettings(), AnnotationChecks(), MaskConfig(semantic=False, interaction=False)
    cache = VlmCache(Lake(str(tmp_path / "lake")))
    plain = stages.masks_for_video({"video": one_clip}, frames, cfg, checks)
    assert plain.summary["status"] == "ok" and plain.summary["vlm_status"] == Status.skipped
    for mode, status in (("http500", Status.vlm_error), ("garbage", Status.vlm_bad_answer)):
        with vlm_server(mode) as server:
            endpoint = VlmEndpoint(
                base_url=server.base_url, model="test-vlm", api_key_env=KEY_ENV, max_retries=0, requests_per_minute=0
            )
            reply = stages.vlm_objects(one_clip, frames, cfg, checks, endpoint, cache)
            assert reply.status == status and server.requests == 1
        faulty = stages.masks_for_video({"video": one_clip, "reply": reply}, frames, cfg, checks)
        assert faulty.summary["status"] == "ok" and faulty.summary["vlm_status"] == status
        assert faulty.summary["content_sha"] == plain.summary["content_sha"]  # the masks are those without
        assert "vlm_png" not in faulty.rows[0]
    assert not list((tmp_path / "lake").rglob("*.json"))  # failures are never cached
