"""DynaPo's VLM-reasoned dynamic masks ("The Dynamic Prior", Wu et al.): a vision-language model
names the objects in key frames that are or may be moving and gives a box for each; each box is
segmented on its frame and the result, the ``vlm`` component, joins the union that is propagated
(:func:`dynpose.domain.annotate.masks.compute_dynamic_masks` with ``objects``).

What differs from DynaPo: the model answers with boxes in every key frame (structured output, one
request per video, several images) instead of a text description on one chosen frame per object,
so no text-prompted segmenter (Sa2VA) is needed. Boxes become masks by SAM2 when its checkpoint is
configured (the video predictor prompted on the key frame alone, which is SAM's single-image
segmentation; the image predictor would need torchvision, which the documented install leaves
out), or on the CPU by OpenCV GrabCut seeded by the box, optionally combined with the motion mask
inside it (``vlm_motion``, docs/masks.md has the measurements).

Key frames are detection frames (every ``detect_every``-th), evenly thinned to ``vlm_keyframes``.
The prompt names each image's frame number and time; the answer is parsed strictly (anything not
exactly the schema's object is None, which :func:`dynpose.domain.vlm_client.ask` records as
``vlm_bad_answer``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dynpose.domain.vlm_client import Reply, VlmEndpoint, ask, cache_key, encode_jpeg, json_object

SCALE = 1000  # boxes are [x0, y0, x1, y1] in 0-1000 coordinates of their image (Qwen-VL's convention)
SEGMENTERS = ("auto", "grabcut", "sam2", "box")
MOTION_MODES = ("none", "and", "or")


@dataclass(frozen=True)
class VlmObject:
    label: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in 0-1000 coordinates of the frame, x0 < x1, y0 < y1


@dataclass
class KeyFrames:
    """What is sent for one video: the sampled-frame indices, their source frame numbers, times, JPEGs."""

    indices: list[int]
    source_indices: list[int]
    times: list[float]
    jpegs: list[bytes]


SYSTEM = (
    "You find the objects in a video that move, or may move, independently of the camera: people, "
    "animals, vehicles, balls, carried or held things, doors and anything else that is moving or could "
    "be. The static scene (ground, walls, buildings, furniture, plants) is not such an object, even "
    "though the camera's motion makes it shift in the image. You see key frames of one video in "
    "temporal order. Answer only with the JSON object the schema asks for."
)

SCHEMA = {
    "name": "dynpose_dynamic_objects",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "frames": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "integer", "description": "the image's number, 1 for the first"},
                        "objects": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "label": {"type": "string", "description": "a short name, e.g. 'person in red'"},
                                    "box": {
                                        "type": "array",
                                        "description": "[x0, y0, x1, y1], 0-1000 coordinates of the image",
                                        "items": {"type": "integer", "minimum": 0, "maximum": SCALE},
                                        "minItems": 4,
                                        "maxItems": 4,
                                    },
                                },
                                "required": ["label", "box"],
                                "additionalProperties": False,
                            },
                        },
                    },
                    "required": ["image", "objects"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["frames"],
        "additionalProperties": False,
    },
}


def prompt_text(source_indices: list[int], times: list[float], video_id: str = "") -> str:
    # "Image k: frame f" lines also let the test server's oracle answer from ground truth.
    lines = [f"Image {k}: frame {f} at {t:.2f} s" for k, (f, t) in enumerate(zip(source_indices, times), 1)]
    text = (
        "The images, in temporal order:\n" + "\n".join(lines) + "\n\n"
        "For every image, list each object in it that is moving or may move, with a tight box: "
        '{"image": <its number>, "objects": [{"label": <short name>, "box": [x0, y0, x1, y1]}]}, the box '
        "corners in 0-1000 coordinates of that image (0, 0 top left; 1000, 1000 bottom right). Include "
        "partly visible or occluded objects, one box per object (never one box around a group). Give "
        "every image exactly once, with an empty list when it shows no such object."
    )
    if video_id:
        text += f"\n\nVideo id: {video_id}"  # for the record (and the test server's oracle)
    return text


# -- strict parsing ------------------------------------------------------------------------------
def _box(value) -> tuple[int, int, int, int] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SCALE for v in value):
        return None
    x0, y0, x1, y1 = value
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _object(value) -> VlmObject | None:
    if not isinstance(value, dict) or set(value) != {"label", "box"}:
        return None
    label, box = value["label"], _box(value["box"])
    if not isinstance(label, str) or not label.strip() or box is None:
        return None
    return VlmObject(label.strip(), box)


def parse_objects(content, n_images: int) -> dict[int, list[VlmObject]] | None:
    """{image index (0-based): objects}, or None unless the content is exactly the schema's object
    and lists each of the ``n_images`` images once."""
    obj = json_object(content)
    if obj is None or set(obj) != {"frames"} or not isinstance(obj["frames"], list):
        return None
    out: dict[int, list[VlmObject]] = {}
    for frame in obj["frames"]:
        if not isinstance(frame, dict) or set(frame) != {"image", "objects"}:
            return None
        k, objects = frame["image"], frame["objects"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_images or k - 1 in out:
            return None
        if not isinstance(objects, list):
            return None
        parsed = [_object(o) for o in objects]
        if any(o is None for o in parsed):
            return None
        out[k - 1] = parsed
    return out if len(out) == n_images else None


# -- key frames and the request -------------------------------------------------------------------
def keyframes(detected, cap: int) -> list[int]:
    """At most ``cap`` of the detection frames, evenly spread, first and last included."""
    detected = [int(i) for i in detected]
    if cap <= 0 or not detected:
        return []
    if len(detected) <= cap:
        return detected
    picks = np.unique(np.linspace(0, len(detected) - 1, cap).round().astype(int))
    return [detected[p] for p in picks]


def key_frames(frames: np.ndarray, indices: list[int], source_indices, timestamps, side: int) -> KeyFrames:
    return KeyFrames(
        [int(i) for i in indices],
        [int(source_indices[i]) for i in indices],
        [float(timestamps[i]) for i in indices],
        [encode_jpeg(frames[i], side) for i in indices],
    )


def ask_objects(keys: KeyFrames, video_id: str, endpoint: VlmEndpoint, prompt_version: str = "1", cache=None) -> Reply:
    """The model's objects for one video's key frames; ``answer`` is {sampled-frame index: objects}."""
    key = cache_key(video_id, keys.jpegs, f"objects-{prompt_version}", endpoint.model)
    n = len(keys.jpegs)
    reply = ask(
        endpoint,
        SYSTEM,
        prompt_text(keys.source_indices, keys.times, video_id),
        keys.jpegs,
        SCHEMA,
        lambda c: parse_objects(c, n),
        key,
        cache,
    )
    if reply.answer is not None:
        reply.answer = {keys.indices[k]: objects for k, objects in reply.answer.items()}
    return reply


# -- boxes to masks --------------------------------------------------------------------------------
def box_pixels(box: tuple[int, int, int, int], h: int, w: int) -> tuple[int, int, int, int]:
    """A 0-1000 box as pixel bounds [x0, x1) x [y0, y1) of an h x w image, at least one pixel."""
    x0 = min(w - 1, math.floor(box[0] * w / SCALE))
    y0 = min(h - 1, math.floor(box[1] * h / SCALE))
    x1 = max(x0 + 1, min(w, math.ceil(box[2] * w / SCALE)))
    y1 = max(y0 + 1, min(h, math.ceil(box[3] * h / SCALE)))
    return x0, y0, x1, y1


def box_mask(rect: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, bool)
    x0, y0, x1, y1 = rect
    out[y0:y1, x0:x1] = True
    return out


def grabcut(img: np.ndarray, rect: tuple[int, int, int, int], iterations: int = 3, margin: float = 0.25) -> np.ndarray:
    """GrabCut of the object in pixel box ``rect`` of RGB ``img``: (h, w) bool, inside the box.

    Runs on a crop around the box (``margin`` x its size on each side, at least 8 px), so the
    background model is the object's surroundings and the cost is the box's, not the frame's. Boxes
    too small to model, or with no background around them, are returned whole.
    """
    h, w = img.shape[:2]
    x0, y0, x1, y1 = rect
    bw, bh = x1 - x0, y1 - y0
    out = box_mask(rect, (h, w))
    if min(bw, bh) < 8:
        return out
    mx, my = max(8, round(margin * bw)), max(8, round(margin * bh))
    cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):  # the box is the whole frame: no background to learn
        return out
    crop = np.ascontiguousarray(img[cy0:cy1, cx0:cx1])
    labels = np.zeros(crop.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, labels, (x0 - cx0, y0 - cy0, bw, bh), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # degenerate colour models (e.g. a flat crop): keep the box
        return out
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if not fg.any():  # GrabCut found nothing: the model said something is there
        return out
    out[:] = False
    out[cy0:cy1, cx0:cx1] = fg
    return out


def combine_motion(seg: np.ndarray, rect, motion: np.ndarray | None, mode: str) -> np.ndarray:
    """``seg`` of one box with the motion mask inside the box: as is, intersected, or united."""
    if mode == "none" or motion is None:
        return seg
    inside = motion & box_mask(rect, seg.shape)
    if mode == "and":
        return seg & inside
    if mode == "or":
        return seg | inside
    raise ValueError(f"unknown vlm_motion {mode!r}; expected one of {MOTION_MODES}")


def segment_objects(
    img: np.ndarray,
    objects: list[VlmObject],
    segmenter: str = "grabcut",
    motion: np.ndarray | None = None,
    motion_mode: str = "none",
    sam2=None,
) -> np.ndarray:
    """The union of the masks of ``objects`` on RGB ``img``, (h, w) bool.

    ``segmenter``: "grabcut" (CPU), "sam2" (``sam2``: a callable (img, rects) -> list of (h, w)
    bool masks, e.g. :class:`dynpose.domain.annotate.masks_sam2.Sam2BoxSegmenter`), or "box" (the
    boxes themselves, a baseline). ``motion`` is the frame's motion mask, for ``motion_mode``.
    """
    h, w = img.shape[:2]
    out = np.zeros((h, w), bool)
    if not objects:
        return out
    rects = [box_pixels(o.box, h, w) for o in objects]
    if segmenter == "sam2":
        segs = [m & box_mask(r, (h, w)) for m, r in zip(sam2(img, rects), rects)]  # SAM may spill: keep the box
    elif segmenter == "grabcut":
        segs = [grabcut(img, r) for r in rects]
    elif segmenter == "box":
        segs = [box_mask(r, (h, w)) for r in rects]
    else:
        raise ValueError(f"unknown vlm_segmenter {segmenter!r}; expected one of {SEGMENTERS}")
    for seg, rect in zip(segs, rects):
        out |= combine_motion(seg, rect, motion, motion_mode)
    return out


def boxes_from_ids(ids: np.ndarray, kinds: list[str] | None = None, min_pixels: int = 16) -> list[VlmObject]:
    """The box of every object id > 0 in an (h, w) id image (what a perfect model would answer);
    ``kinds[id - 1]`` names it. Ids with fewer than ``min_pixels`` pixels are left out."""
    h, w = ids.shape
    out = []
    for oid in np.unique(ids[ids > 0]):
        ys, xs = np.nonzero(ids == oid)
        if len(xs) < min_pixels:
            continue
        box = (
            math.floor(xs.min() * SCALE / w),
            math.floor(ys.min() * SCALE / h),
            math.ceil((xs.max() + 1) * SCALE / w),
            math.ceil((ys.max() + 1) * SCALE / h),
        )
        name = kinds[oid - 1] if kinds and 0 < oid <= len(kinds) else "object"
        out.append(VlmObject(f"{name} {int(oid)}", box))
    return out
