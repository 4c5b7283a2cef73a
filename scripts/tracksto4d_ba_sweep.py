#!/usr/bin/env python
"""Choose TracksTo4D's +BA options on a tuning split: every InferConfig variant below on the cached
tracks of a `dynpose train tracksto4d` run (its ``<out>_tracks`` folder), ATE against ground truth.

    python scripts/tracksto4d_ba_sweep.py out/bench/suite out/t4d/tracksto4d_bench_tracks 000 001 ... 013

Run it on the clips the checkpoint trained on (the tuning split), never on the held-out ones.
The table in docs/tracksto4d.md ("+BA options") came from this script with the shipped weights.
"""

import sys
from pathlib import Path

import numpy as np

from dynpose.domain.tracksto4d import infer
from dynpose.evaluation.ground_truth import load_ground_truth
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory
from dynpose.evaluation.train_tracksto4d import clip_tracks, suite_clips

VARIANTS = {
    "network alone": None,
    "within 10 px, least squares": infer.InferConfig(ba=True, ba_max_error=10.0, ba_loss="trivial"),
    "... focal fixed": infer.InferConfig(ba=True, ba_max_error=10.0, ba_loss="trivial", ba_refine_focal=False),
    "... Cauchy 2 px": infer.InferConfig(ba=True, ba_max_error=10.0),
    "... within 5 px": infer.InferConfig(ba=True, ba_max_error=5.0, ba_loss="trivial"),
    "within 20 px, Cauchy 2 px (default)": infer.InferConfig(ba=True),
}


def main(suite: str, cache: str, prefixes: list[str]) -> None:
    model, _ = infer.load_checkpoint(str(infer.DEFAULT_CHECKPOINT))
    scores = {name: [] for name in VARIANTS}
    for clip in suite_clips(suite, prefixes):
        tracks, timestamps, _, _ = clip_tracks(clip, Path(cache))
        gt = load_ground_truth(clip.gt_dir).poses
        for name, cfg in VARIANTS.items():
            res = infer.run(model, tracks, timestamps, cfg or infer.InferConfig())
            m = evaluate_trajectory(res, gt)
            scores[name].append((m["ate"], m["rpe_r"], res.registered_ratio))
        print(clip.name, flush=True)
    print("| variant | ATE mean | ATE median | RPE-r mean | registered |\n|---|---|---|---|---|")
    for name, rows in scores.items():
        ate, rpe_r, registered = np.array(rows).T
        print(f"| {name} | {ate.mean():.3f} | {np.median(ate):.3f} | {rpe_r.mean():.2f} | {registered.mean():.1%} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
