"""Contact sheet of generated frames: ``python -m dynpose.domain.synth.contact_sheet docs/img/synth_contact_sheet.png``.

One row per camera trajectory (five frames one second apart, alternating layouts) and two rows
of unsuitable variants, each thumbnail labelled. Saved as a 256-colour PNG to stay small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dynpose.domain.synth.camera_paths import TRAJECTORIES
from dynpose.domain.synth.clip import ClipSpec, render_clip

TW, TH = 256, 144


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
    img[: h + 8, : w + 8] = (img[: h + 8, : w + 8] * 0.35).astype(np.uint8)
    cv2.putText(img, text, (4, h + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _thumb(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(TW / w, TH / h)
    small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.zeros((TH, TW, 3), np.uint8)
    y, x = (TH - small.shape[0]) // 2, (TW - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def build(seed: int = 1, width: int = 854, height: int = 480, progress=print) -> np.ndarray:
    layouts = ["room", "street", "plaza"]
    rows = []
    for k, traj in enumerate([t for t in TRAJECTORIES if t != "tripod"]):
        lay = layouts[k % 3]
        spec = ClipSpec(
            seed=seed * 100 + k,
            layout=lay,
            trajectory=traj,
            width=width,
            height=height,
            fps=1.0,
            seconds=5.0,
            near_object=k % 2 == 0,
        )
        clip = render_clip(spec)
        progress(f"{traj} ({lay}): objects {clip.meta['object_kinds']}")
        cells = [_thumb(f) for f in clip.frames]
        cells[0] = _label(cells[0], f"{traj} / {lay}")
        for j in range(1, len(cells)):
            cells[j] = _label(cells[j], f"t = {clip.timestamps[j]:.0f} s")
        rows.append(np.concatenate(cells, 1))
    variants = [
        "tripod",
        "shot_change",
        "zoom",
        "fisheye",
        "huge_object",
        "long_focal",
        "cartoon",
        "overlay",
        "side_by_side",
        "low_res",
    ]
    cells = []
    for k, var in enumerate(variants):
        lay = {"long_focal": "street", "cartoon": "plaza"}.get(var, layouts[k % 3])
        spec = ClipSpec(
            seed=seed * 100 + 50 + k,
            layout=lay,
            trajectory="pan_translate",
            variant=var,
            width=width,
            height=height,
            fps=2.0,
            seconds=3.0,
        )
        clip = render_clip(spec)
        progress(f"{var} ({lay}): category {clip.meta['category']}")
        frame = clip.frames[-1] if var in ("shot_change", "zoom") else clip.frames[len(clip) // 2]
        cells.append(_label(_thumb(frame), f"{var} ({clip.meta['category']})"))
    for r in range(0, len(cells), 5):
        rows.append(np.concatenate(cells[r : r + 5], 1))
    return np.concatenate(rows, 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sheet = build(args.seed)
    from PIL import Image

    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(args.out, optimize=True)
    print(f"{args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
