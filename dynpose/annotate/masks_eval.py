"""Score dynamic masks against synthetic ground truth (``dynpose.synth``: object_ids > 0).

    python -m dynpose.annotate.masks_eval room:handheld_walk:3:near street:orbit:1 --seconds 5

Per clip and component: IoU, recall (share of dynamic pixels masked) and false-positive rate
(share of static pixels masked), pooled over frames (sums of pixels, so frames with no dynamic
pixel still count through their false positives). Semantic, interaction and motion are scored on
the detection frames only, where they are defined; propagated and union on every frame.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dynpose.annotate.masks import COMPONENTS, DynamicMasks, MaskConfig, compute_dynamic_masks


def mask_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Pooled IoU, recall and false-positive rate of bool masks of the same shape."""
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    pos, neg = int(gt.sum()), int((~gt).sum())
    return {
        "iou": inter / union if union else float("nan"),
        "recall": inter / pos if pos else float("nan"),
        "fpr": int((pred & ~gt).sum()) / neg if neg else float("nan"),
    }


def score_masks(dm: DynamicMasks, gt: np.ndarray) -> dict[str, dict[str, float]]:
    det = dm.detected_frames
    out = {name: mask_scores(dm.components[name][det], gt[det]) for name in COMPONENTS[:3]}
    out["propagated"] = mask_scores(dm.components["propagated"], gt)
    out["union"] = mask_scores(dm.union, gt)
    return out


def _spec(text: str, seconds: float):
    from dynpose.synth import ClipSpec

    layout, trajectory, seed, *flags = text.split(":")
    return ClipSpec(seed=int(seed), layout=layout, trajectory=trajectory, seconds=seconds, near_object="near" in flags)


def main(argv: list[str] | None = None) -> None:
    from dynpose.synth import render_clip

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+", help="layout:trajectory:seed[:near], e.g. room:handheld_walk:3:near")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-refine", action="store_true", help="also score propagate_refine=False")
    args = ap.parse_args(argv)
    configs = {"default": MaskConfig()}
    if args.no_refine:
        configs["no_refine"] = MaskConfig(propagate_refine=False)
    print("| clip | config | dyn. cover | " + " | ".join(f"{c} IoU / rec / FPR" for c in (*COMPONENTS, "union")) + " | mask s |")
    print("|---" * (5 + len(COMPONENTS)) + "|")
    for text in args.clips:
        clip = render_clip(_spec(text, args.seconds))
        gt = clip.object_ids > 0
        for name, cfg in configs.items():
            t = time.perf_counter()
            dm = compute_dynamic_masks(clip.frames, cfg)
            secs = time.perf_counter() - t
            s = score_masks(dm, gt)
            cells = [" / ".join(f"{s[c][k]:.2f}" for k in ("iou", "recall", "fpr")) for c in (*COMPONENTS, "union")]
            print(f"| {text} | {name} | {gt.mean():.1%} | " + " | ".join(cells) + f" | {secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
