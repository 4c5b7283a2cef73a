"""Dynamic masks: flow geometry, motion / propagation on synthetic planes, people on a real frame,
PNG round trip and the SAM2 back end on a random tiny model."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from dynpose.domain.annotate import flow as fl
from dynpose.domain.annotate.masks import MaskConfig, compute_dynamic_masks, decode_mask, encode_mask
from dynpose.domain.annotate.masks_motion import interaction_mask, motion_mask
from dynpose.domain.annotate.masks_propagate import FlowPropagator

H, W = 180, 320


def _texture(rng, h, w, colour=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Multi-scale noise: texture that DIS can track at every scale."""
    img = np.zeros((h, w), np.float32)
    for cell in (4, 12, 40):
        small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
        img += cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[
            cell : cell + h, cell : cell + w
        ]
    img = (img - img.min()) / (img.max() - img.min())
    return np.clip(np.stack([img * c for c in colour], -1) * 255, 0, 255).astype(np.uint8)


def _camera(t: float) -> np.ndarray:
    """Homography induced by a plane at depth 1 under a small rotation and translation at time t."""
    K = np.array([[300.0, 0, W / 2], [0, 300.0, H / 2], [0, 0, 1]])
    a = np.deg2rad(0.3 * t)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    tr = np.array([0.012 * t, 0.004 * t, 0.01 * t])
    return K @ (R - np.outer(tr, [0, 0, 1.0])) @ np.linalg.inv(K)


def synthetic_clip(n: int = 13, speed: float = 4.0, near_plane: bool = False, seed: int = 0):
    """Frames of a textured plane seen by a moving camera, a textured disc moving across it.

    Returns (frames (n, H, W, 3) uint8, blob ground truth (n, H, W) bool). With ``near_plane`` a
    second, static plane twice as close covers the lower 45% of the view (real parallax).
    """
    rng = np.random.default_rng(seed)
    pad = 60
    far = _texture(rng, H + 2 * pad, W + 2 * pad)
    near = _texture(rng, H + 2 * pad, W + 2 * pad, (0.9, 0.7, 0.5))
    blob = _texture(rng, 50, 50, (0.4, 1.0, 0.6))
    disc = np.zeros((50, 50), np.uint8)
    cv2.circle(disc, (25, 25), 22, 1, -1)
    shift = np.array([[1, 0, -pad], [0, 1, -pad], [0, 0, 1.0]])
    frames, gts = [], []
    for t in range(n):
        Hf = _camera(t) @ shift
        img = cv2.warpPerspective(far, Hf, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if near_plane:  # a static plane at depth 1/2: twice the translation parallax
            K = np.array([[300.0, 0, W / 2], [0, 300.0, H / 2], [0, 0, 1]])
            Hn = (_camera(t) - K @ np.outer(np.array([0.012, 0.004, 0.01]) * t, [0, 0, 1.0]) @ np.linalg.inv(K)) @ shift
            region = np.zeros(near.shape[:2], np.uint8)
            region[pad + int(H * 0.55) :, :] = 1  # the lower 45% of the view
            inside = cv2.warpPerspective(region, Hn, (W, H), flags=cv2.INTER_NEAREST) > 0
            img[inside] = cv2.warpPerspective(near, Hn, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)[
                inside
            ]
        gt = np.zeros((H, W), bool)
        # Up and to the right: across the epipolar lines (the epipole lies far right, a bit low),
        # since motion along them is invisible to two-view geometry.
        x, y = int(round(70 + speed * t)), int(round(45 - 0.8 * speed * t))
        gt[y : y + 50, x : x + 50] = disc > 0
        img[gt] = blob[disc > 0]
        frames.append(img)
        gts.append(gt)
    return np.stack(frames), np.stack(gts)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ---------------------------------------------------------------- flow geometry


def test_sampson_error_is_zero_for_a_true_fundamental_matrix():
    rng = np.random.default_rng(1)
    pts3 = rng.uniform([-1, -1, 4], [1, 1, 8], (200, 3))
    K = np.array([[200.0, 0, 160], [0, 200.0, 90], [0, 0, 1]])
    R, t = cv2.Rodrigues(np.array([0.0, 0.05, 0.0]))[0], np.array([0.3, 0.0, 0.05])
    pa = (pts3 @ K.T)[:, :2] / pts3[:, 2:]
    cam_b = pts3 @ R.T + t
    pb = (cam_b @ K.T)[:, :2] / cam_b[:, 2:]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    F = np.linalg.inv(K).T @ tx @ R @ np.linalg.inv(K)
    assert fl.sampson_error(F, pa, pb).max() < 1e-12
    F_fit, inl = fl.fit_fundamental(pa, pb)
    assert inl.mean() > 0.95 and np.median(fl.sampson_error(F_fit, pa, pb)) < 1e-2
    moved = pb + [0.0, 5.0]  # a 5 px vertical shift breaks the horizontal-baseline geometry
    assert np.median(fl.sampson_error(F, pa, moved)) > 1.0


def test_motion_residual_marks_the_moving_blob_only():
    frames, gt = synthetic_clip(n=3)
    res = fl.motion_residual(frames[1], frames[2])
    thr = H * W / 8100
    assert res.shape == (H, W)
    assert np.median(res[gt[1]]) > thr  # the blob breaks the static-scene geometry
    assert (res[~gt[1]] > thr).mean() < 0.03  # the plane (camera motion only) does not


def test_static_model_prefers_f_with_parallax_and_h_on_a_plane():
    frames, _ = synthetic_clip(n=2, near_plane=True)
    flow = fl.dis_flow(frames[0], frames[1])
    _, model = fl.flow_residual(flow, fl.dis_flow(frames[1], frames[0]))
    assert model.kind == "F"
    frames, _ = synthetic_clip(n=2)
    flow = fl.dis_flow(frames[0], frames[1])
    _, model = fl.flow_residual(flow, fl.dis_flow(frames[1], frames[0]))
    assert model.kind == "H"


# ---------------------------------------------------------------- masks on synthetic clips


@pytest.mark.parametrize("near_plane", [False, True])
def test_motion_mask_finds_the_blob_not_the_background(near_plane):
    frames, gt = synthetic_clip(n=13, near_plane=near_plane)
    cfg = MaskConfig(semantic=False, interaction=False)
    dm = compute_dynamic_masks(frames, cfg)
    for i in dm.detected_frames:
        m = dm.components["motion"][i]
        assert iou(m, gt[i]) > 0.6, (i, iou(m, gt[i]))
        assert (m & ~gt[i]).sum() / (~gt[i]).sum() < 0.03  # static plane(s) stay unmasked


def test_motion_threshold_is_the_paper_one():
    res = np.zeros((90, 90), np.float32)
    res[10:40, 10:40] = 90 * 90 / 8100 * 1.01  # just above H*W/8100 = 1.0
    res[50:80, 50:80] = 90 * 90 / 8100 * 0.99  # just below
    m = motion_mask(res, quantile=None)
    assert m[20, 20] and not m[60, 60]


def test_flow_propagation_follows_a_moving_object():
    frames, gt = synthetic_clip(n=7, speed=5.0)
    back = {t: fl.dis_flow(frames[t], frames[t - 1]) for t in range(1, 7)}
    fwd = {t: fl.dis_flow(frames[t], frames[t + 1]) for t in range(0, 6)}
    prop = FlowPropagator(back.__getitem__, fwd.__getitem__)  # warping only, no motion evidence
    out = prop.propagate(0, gt[0], 6)
    for k in range(1, 6):
        assert iou(out[k], gt[k]) > 0.7, (k, iou(out[k], gt[k]))
    assert iou(gt[0], gt[5]) < 0.3  # the object did move: a frozen mask would fail above


def test_union_components_shapes_and_coverage():
    frames, gt = synthetic_clip(n=13)
    dm = compute_dynamic_masks(frames, MaskConfig(semantic=False, interaction=False))
    assert list(dm.detected_frames) == [0, 6, 12]
    assert set(dm.components) == {"semantic", "interaction", "motion", "propagated"}
    for m in list(dm.components.values()) + [dm.union]:
        assert m.shape == (13, H, W) and m.dtype == bool
    assert not dm.components["motion"][1:6].any()  # detectors only run on detected frames
    for name, m in dm.components.items():
        assert not (m & ~dm.union).any(), name  # the union holds every component
    cov = dm.coverage()
    assert set(cov) == {"semantic", "interaction", "motion", "propagated", "union"}
    assert np.allclose(cov["union"], dm.union.mean(axis=(1, 2)))
    assert cov["semantic"].max() == 0.0
    # The propagated masks keep tracking the blob between detections.
    ious = [iou(dm.components["propagated"][i], gt[i]) for i in range(13)]
    assert min(ious) > 0.5, np.round(ious, 2)
    assert 0.02 < cov["union"].mean() < 0.15
    assert {"flow", "motion", "propagation", "total"} <= set(dm.timings)


def test_masks_come_back_at_input_size():
    frames, gt = synthetic_clip(n=4)
    big = np.stack([cv2.resize(f, (2 * W, 2 * H)) for f in frames])
    dm = compute_dynamic_masks(big, MaskConfig(semantic=False, interaction=False, work_max_side=W))
    assert dm.union.shape == (4, 2 * H, 2 * W)
    gt_big = np.stack([cv2.resize(g.astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST) > 0 for g in gt])
    assert iou(dm.components["motion"][0], gt_big[0]) > 0.6


def test_propagator_none_detects_every_frame():
    frames, _ = synthetic_clip(n=4)
    dm = compute_dynamic_masks(frames, MaskConfig(semantic=False, interaction=False, propagator="none"))
    assert list(dm.detected_frames) == [0, 1, 2, 3]
    assert not dm.components["propagated"].any() and dm.union[1:].any(axis=(1, 2)).all()
    with pytest.raises(ValueError):
        compute_dynamic_masks(frames, MaskConfig(propagator="nope", semantic=False, interaction=False))


def test_single_frame_and_odd_lengths():
    frames, _ = synthetic_clip(n=8)
    one = compute_dynamic_masks(frames[:1], MaskConfig(semantic=False, interaction=False))
    assert one.union.shape == (1, H, W) and not one.union.any()  # no neighbour: no motion evidence
    dm = compute_dynamic_masks(frames, MaskConfig(semantic=False, interaction=False, detect_every=3, propagate=2))
    assert list(dm.detected_frames) == [0, 3, 6]
    assert not dm.components["propagated"][[2, 5]].any()  # frames no detection reaches
    with pytest.raises(ValueError):
        compute_dynamic_masks(frames[..., 0])


def test_interaction_grows_from_the_hand_into_attached_motion_only():
    hand = np.zeros((100, 100), bool)
    hand[40:60, 10:30] = True
    residual = np.zeros((100, 100), np.float32)
    residual[45:55, 30:50] = 5.0  # held object touching the hand, moving
    residual[80:95, 80:95] = 5.0  # a moving thing far from the hand
    m = interaction_mask([hand], residual, None)
    assert m[50, 40] and m[50, 20] and not m[90, 90]
    assert (interaction_mask([hand], None, None) == hand).all()


def test_encode_decode_round_trip():
    rng = np.random.default_rng(3)
    mask = cv2.GaussianBlur(rng.random((120, 200)).astype(np.float32), (0, 0), 6) > 0.5
    data = encode_mask(mask)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < mask.size // 8  # bilevel PNG: well under a bit per pixel
    back = decode_mask(data)
    assert back.dtype == bool and (back == mask).all()
    assert not decode_mask(encode_mask(np.zeros((5, 7), bool))).any()
    with pytest.raises(ValueError):
        decode_mask(b"not a png")


# ---------------------------------------------------------------- real frame: people


def test_person_mask_on_a_real_frame():
    from dynpose.domain.annotate.masks_detect import segment_people
    from tests.conftest import real_frame

    frame = real_frame("01_dog_frame000_854x480.png")  # 01_dog.mp4 sampled at 12 fps, 854 px: its first frame
    assert frame.shape == (480, 854, 3)
    small = cv2.resize(frame, (480, 270), interpolation=cv2.INTER_AREA)
    people = segment_people(small)
    assert people, "no person found"
    mask = cv2.resize(np.logical_or.reduce(people).astype(np.uint8), (854, 480), interpolation=cv2.INTER_NEAREST) > 0
    # Hand-measured box around the woman (x 145-315, y 140-375); she fills about half of it.
    box = np.zeros_like(mask)
    box[140:375, 145:315] = True
    assert (mask & box).sum() > 0.3 * box.sum()  # most of the person
    assert (mask & box).sum() > 0.9 * mask.sum()  # almost nothing outside her box
    assert mask.mean() < 0.08  # not the background (nor the dog)


def test_hands_found_on_a_real_frame():
    from dynpose.domain.annotate.masks_detect import detect_hands, hand_mask
    from tests.conftest import real_frame

    frame = real_frame("03_blocks_frame020_480x270.png")  # 03_blocks.mp4 sampled at 12 fps, 480 px: frame 20
    hands = detect_hands(frame)
    assert len(hands) >= 1
    h, w = frame.shape[:2]
    for lm in hands:
        assert lm.shape == (21, 2) and (lm[:, 0] > -5).all() and (lm[:, 0] < w + 5).all()
        area = hand_mask(lm, (h, w)).mean()
        assert 0.005 < area < 0.3  # a hand in this close-up, not the whole table


# ---------------------------------------------------------------- SAM2 back end

_SAM2 = importlib.util.find_spec("sam2") is not None

TINY_SAM2 = {
    "image_size": 256,
    "num_maskmem": 3,
    "image_encoder": {
        "trunk": {
            "embed_dim": 8,
            "num_heads": 1,
            "stages": [1, 1, 2, 1],
            "global_att_blocks": [3],
            "window_pos_embed_bkg_spatial_size": [4, 4],
        },
        "neck": {"d_model": 32, "backbone_channel_list": [64, 32, 16, 8], "position_encoding": {"num_pos_feats": 32}},
    },
    "memory_attention": {
        "d_model": 32,
        "num_layers": 1,
        "layer": {
            "d_model": 32,
            "dim_feedforward": 64,
            "self_attention": {"embedding_dim": 32, "feat_sizes": [16, 16]},
            "cross_attention": {"embedding_dim": 32, "feat_sizes": [16, 16], "kv_in_dim": 16},
        },
    },
    "memory_encoder": {
        "out_dim": 16,
        "in_dim": 32,
        "position_encoding": {"num_pos_feats": 16},
        "mask_downsampler": {"embed_dim": 32},
        "fuser": {"num_layers": 1, "layer": {"dim": 32}},
    },
}


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    """A 256 px SAM2 config derived from the packaged hiera-t one, and random weights saved to disk."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from dynpose.domain.annotate import masks_sam2 as ms

    ms._import_sam2()
    cfg = OmegaConf.merge(OmegaConf.load(ms.resolve_config("configs/sam2.1/sam2.1_hiera_t.yaml")), {"model": TINY_SAM2})
    root = tmp_path_factory.mktemp("sam2")
    (root / "tiny.yaml").write_text(OmegaConf.to_yaml(cfg))
    torch.manual_seed(0)
    model = instantiate(
        OmegaConf.merge(cfg, OmegaConf.from_dotlist(ms._VIDEO_OVERRIDES)).model, _recursive_=True, **ms._only_sam2()
    )
    torch.save({"model": model.state_dict()}, root / "tiny.pt")
    return str(root / "tiny.pt"), str(root / "tiny.yaml")


@pytest.mark.skipif(
    not _SAM2, reason="sam2 not installed (optional: pip install --no-deps sam2==1.1.0, see docs/masks.md)"
)
def test_sam2_backend_runs_on_a_random_tiny_model(tiny_sam2):
    ckpt, config = tiny_sam2
    frames, _ = synthetic_clip(n=8)
    cfg = MaskConfig(semantic=False, interaction=False, propagator="sam2", sam2_checkpoint=ckpt, sam2_config=config)
    dm = compute_dynamic_masks(frames, cfg)
    assert dm.components["propagated"].shape == (8, H, W)
    assert list(dm.detected_frames) == [0, 6]
    # The prompt frame returns the prompt mask (SAM2 feeds a mask input straight to the output).
    for i in dm.detected_frames:
        prompt = dm.components["motion"][i]
        assert prompt.any() and iou(dm.components["propagated"][i], prompt) > 0.9
    assert dm.timings["propagation"] > 0


@pytest.mark.skipif(not _SAM2, reason="sam2 not installed")
def test_sam2_backend_explains_missing_files(tiny_sam2, tmp_path):
    from dynpose.domain.annotate.masks_sam2 import Sam2Unavailable

    frames = np.zeros((2, 32, 32, 3), np.uint8)
    cfg = MaskConfig(
        semantic=False,
        interaction=False,
        propagator="sam2",
        sam2_checkpoint=str(tmp_path / "missing.pt"),
        sam2_config=tiny_sam2[1],
    )
    with pytest.raises(Sam2Unavailable, match="checkpoint not found"):
        compute_dynamic_masks(frames, cfg)
    cfg.sam2_checkpoint, cfg.sam2_config = tiny_sam2[0], str(tmp_path / "nope.yaml")
    with pytest.raises(Sam2Unavailable, match="config"):
        compute_dynamic_masks(frames, cfg)


@pytest.mark.skipif(not _SAM2, reason="sam2 not installed")
def test_sam2_segments_vlm_boxes_on_a_random_tiny_model(tiny_sam2):
    """The vlm component's SAM2 back end: one mask per box, at frame size, kept inside its box
    (a random model's masks mean nothing; this checks the plumbing, not the quality)."""
    from dynpose.domain.annotate import masks_vlm as mv
    from dynpose.domain.annotate.masks_sam2 import Sam2BoxSegmenter

    ckpt, config = tiny_sam2
    frames, truth = synthetic_clip(n=1)
    segmenter = Sam2BoxSegmenter(ckpt, config)
    rects = [(60, 30, 130, 100), (10, 10, 40, 40)]
    masks = segmenter(frames[0], rects)
    assert len(masks) == 2 and all(m.shape == (H, W) and m.dtype == bool for m in masks)
    objects = [mv.VlmObject("disc", mv.boxes_from_ids(truth[0].astype(np.uint16))[0].box)]
    seg = mv.segment_objects(frames[0], objects, "sam2", sam2=segmenter)
    box = mv.box_mask(mv.box_pixels(objects[0].box, H, W), (H, W))
    assert seg.shape == (H, W) and not (seg & ~box).any()
