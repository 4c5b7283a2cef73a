"""Procedural frames for the filter tests: textures with corners and well-defined flow everywhere."""

from __future__ import annotations

import cv2
import numpy as np


def texture(h: int, w: int, seed: int = 0, colour: bool = True) -> np.ndarray:
    """Multi-scale noise plus small blobs, (h, w, 3) uint8 (or (h, w) when ``colour`` is False)."""
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if colour else (h, w)
    img = np.zeros(shape, np.float32)
    for s in (4, 8, 16, 32):
        noise = rng.random((s, max(1, s * w // h), *shape[2:])).astype(np.float32)
        img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) / np.sqrt(s)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20
    for _ in range(h * w // 300):
        if colour:
            value = tuple(float(c) for c in rng.integers(0, 255, 3))
            cv2.circle(img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(2, 5)), value, -1)
        else:
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.circle(img, centre, int(rng.integers(2, 5)), float(rng.integers(0, 255)), -1)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)
