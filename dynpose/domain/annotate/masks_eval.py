"""Score dynamic masks against synthetic ground truth (``dynpose.domain.synth``: object_ids > 0).

    python -m dynpose.domain.annotate.masks_eval room:handheld_walk:3:near street:orbit:1 --seconds 5 \
        --configs default,no_refine,always_f --cache /tmp/synth_clips

Per clip and component: IoU, recall (share of dynamic pixels masked) and false-positive rate
(share of static pixels masked), pooled over frames (sums of pixels, so frames with no dynamic
pixel still count through their false positives). Semantic, interaction and motion are scored on
the detection frames only, where they are defined; propagated and union on every frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dynpose.domain.annotate.masks import (
    COMPONENTS,
    VLM,
    DynamicMasks,
    MaskConfig,
    compute_dynamic_masks,
    detection_frames,
)
from dynpose.domain.annotate.masks_vlm import boxes_from_ids, keyframes


def mask_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Pooled IoU, recall and false-positive rate of bool masks of the same shape."""
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    pos, neg = int(gt.sum()), int((~gt).sum())
    return {
        "iou": inter / union if union else float("nan"),
        "recall": inter / pos if pos else float("nan"),
        "fpr": int((pred & ~gt).sum()) / neg if neg else float("nan"),
    }


def score_masks(dm: DynamicMasks, gt: np.ndarray, vlm_frames=None) -> dict[str, dict[str, float]]:
    det = dm.detected_frames
    out = {name: mask_scores(dm.components[name][det], gt[det]) for name in COMPONENTS[:3]}
    out["propagated"] = mask_scores(dm.components["propagated"], gt)
    out["union"] = mask_scores(dm.union, gt)
    if VLM in dm.components and vlm_frames:
        out[VLM] = mask_scores(dm.components[VLM][list(vlm_frames)], gt[list(vlm_frames)])
    return out


def oracle_objects(ids: np.ndarray, cfg: MaskConfig, kinds: list[str] | None = None) -> dict:
    """A perfect VLM's answer: every ground-truth object's box on each key frame."""
    keys = keyframes(detection_frames(len(ids), cfg), cfg.vlm_keyframes)
    return {i: boxes_from_ids(ids[i], kinds) for i in keys}


# Variants worth comparing: the defaults, flow propagation without motion re-thresholding, the
# fundamental matrix whenever it explains anything more than the homography (Ro-DynRF / the paper
# always use F), and without Ro-DynRF's 80th-percentile cut.
CONFIGS = {
    "default": {},
    "no_refine": {"propagate_refine": False},
    "always_f": {"f_gain": 0.0},
    "no_quantile": {"motion_quantile": None},
    # with oracle boxes (see the module docstring): the box itself, GrabCut, GrabCut and / or motion
    "vlm_box": {"vlm_segmenter": "box"},
    "vlm_grabcut": {"vlm_segmenter": "grabcut"},
    "vlm_grabcut_and_motion": {"vlm_segmenter": "grabcut", "vlm_motion": "and"},
    "vlm_grabcut_or_motion": {"vlm_segmenter": "grabcut", "vlm_motion": "or"},
}


def _spec(text: str, seconds: float):
    from dynpose.domain.synth import ClipSpec

    layout, trajectory, seed, *flags = text.split(":")
    return ClipSpec(seed=int(seed), layout=layout, trajectory=trajectory, seconds=seconds, near_object="near" in flags)


def _clip(text: str, seconds: float, cache: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(frames, ground-truth object ids, object kinds) of a clip, rendered or read back from ``cache``."""
    path = Path(cache) / f"{text.replace(':', '_')}_{seconds:g}s_ids.npz" if cache else None
    if path is not None and path.exists():
        data = np.load(path)
        return data["frames"], data["ids"], [str(k) for k in data["kinds"]]
    from dynpose.domain.synth import render_clip

    clip = render_clip(_spec(text, seconds))
    kinds = list(clip.meta["object_kinds"])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, frames=clip.frames, ids=clip.object_ids, kinds=np.array(kinds, dtype=str))
    return clip.frames, clip.object_ids, kinds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+", help="layout:trajectory:seed[:near], e.g. room:handheld_walk:3:near")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--configs", default="default", help=f"comma-separated, from {sorted(CONFIGS)}")
    ap.add_argument("--cache", help="directory to keep rendered clips in (.npz)")
    args = ap.parse_args(argv)
    names = args.configs.split(",")
    configs = {name: MaskConfig(**CONFIGS[name]) for name in names}
    columns = (*COMPONENTS, *((VLM,) if any(n.startswith("vlm_") for n in names) else ()), "union")
    print("| clip | config | dyn. cover | " + " | ".join(f"{c} IoU / rec / FPR" for c in columns) + " | mask s |")
    print("|---" * (4 + len(columns)) + "|")
    nan = {"iou": float("nan"), "recall": float("nan"), "fpr": float("nan")}
    for text in args.clips:
        frames, ids, kinds = _clip(text, args.seconds, args.cache)
        gt = ids > 0
        for name, cfg in configs.items():
            objects = oracle_objects(ids, cfg, kinds) if name.startswith("vlm_") else None
            t = time.perf_counter()
            dm = compute_dynamic_masks(frames, cfg, objects)
            secs = time.perf_counter() - t
            s = score_masks(dm, gt, sorted(objects) if objects else None)
            cells = [" / ".join(f"{s.get(c, nan)[k]:.2f}" for k in ("iou", "recall", "fpr")) for c in columns]
            print(f"| {text} | {name} | {gt.mean():.1%} | " + " | ".join(cells) + f" | {secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
