"""Camera effects applied to rendered linear frames, and post-processing of 8-bit frames.

Linear stage: motion blur along per-pixel motion vectors (a cheap stand-in for averaging
sub-frame renders), depth of field, exposure, vignetting, Poisson-Gaussian sensor noise.
Then a filmic tone curve + gamma to uint8. Post stage (8-bit): cartoon look, text/logo overlays.
"""

from __future__ import annotations

import cv2
import numpy as np

from dynpose.domain.synth import textures as tx


def motion_blur(img: np.ndarray, motion: np.ndarray, max_samples: int = 12) -> np.ndarray:
    """Average of the image sampled along each pixel's motion vector over the shutter interval."""
    mag = np.hypot(motion[0][::4, ::4], motion[1][::4, ::4])
    m = float(np.percentile(mag, 98))
    if m < 0.6:
        return img
    k = int(np.clip(np.ceil(m / 1.5) + 1, 2, max_samples))
    H, W = motion.shape[1:]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    acc = np.zeros_like(img)
    for s in np.linspace(-0.5, 0.5, k, dtype=np.float32):
        acc += cv2.remap(img, gx + s * motion[0], gy + s * motion[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return acc / k


def depth_of_field(img: np.ndarray, depth: np.ndarray, focus: float, fx: float, aperture: float) -> np.ndarray:
    """Thin-lens blur: circle of confusion ~ aperture * fx * |1/z - 1/focus|, blended from a few
    pre-blurred layers (cheap, and good enough for a blurred background behind a sharp subject)."""
    z = np.where(np.isfinite(depth), depth, 1e4)
    coc = aperture * fx * np.abs(1.0 / z - 1.0 / focus)  # blur radius in pixels
    levels = [0.0, 1.5, 3.5, 7.0, 14.0]
    layers = [img] + [cv2.GaussianBlur(img, (0, 0), s) for s in levels[1:]]
    coc = np.clip(coc, 0, levels[-1])
    out = np.zeros_like(img)
    for i in range(len(levels) - 1):
        a, b = levels[i], levels[i + 1]
        w = np.clip((coc - a) / (b - a), 0, 1)
        in_band = (coc >= a) & (coc <= b)
        w = np.where(in_band, w, 0)[..., None]
        out += np.where(in_band[..., None], layers[i] * (1 - w) + layers[i + 1] * w, 0)
    out += np.where((coc >= levels[-1])[..., None], layers[-1], 0)
    return out


def vignette(h: int, w: int, strength: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
    return (1 - strength * r2**1.5)[..., None].astype(np.float32)


def _tone_lut(n: int = 4096, top: float = 4.0) -> np.ndarray:
    """Linear [0, top] -> 8-bit: Reinhard-style shoulder, then gamma 2.2."""
    x = np.linspace(0, top, n)
    white = 2.5
    y = x * (1 + x / white**2) / (1 + x)
    return np.clip(np.round(255 * np.clip(y, 0, 1) ** (1 / 2.2)), 0, 255).astype(np.uint8)


_LUT = _tone_lut()
_LUT_SCALE = (len(_LUT) - 1) / 4.0


class Sensor:
    """Per-clip camera response: exposure, white balance, vignetting, noise, slight lens softness."""

    def __init__(
        self,
        rng: np.random.Generator,
        h: int,
        w: int,
        noise: float = 1.0,
        vignetting: float | None = None,
        softness: float | None = None,
    ):
        self.vig = vignette(h, w, rng.uniform(0.1, 0.35) if vignetting is None else vignetting)
        self.wb = np.array([1.0, 1.0, 1.0], np.float32) * (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
        self.noise = noise
        self.shot = 0.0012 * noise * rng.uniform(0.6, 1.4)  # Poisson part (variance ~ signal)
        self.read = (0.0025 * noise) ** 2  # Gaussian floor
        self.soft = rng.uniform(0.35, 0.6) if softness is None else softness
        # A small bank of noise fields, shifted per frame: cheap and deterministic.
        self.bank = rng.standard_normal((2, h + 16, w + 16, 3), dtype=np.float32) if noise > 0 else None

    def develop(self, linear: np.ndarray, exposure: float, frame_index: int, rng: np.random.Generator) -> np.ndarray:
        """Linear radiance -> uint8 RGB."""
        img = linear * (self.vig * (exposure * self.wb))
        if self.soft > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.soft)
        if self.bank is not None:
            h, w = img.shape[:2]
            dy, dx = rng.integers(0, 16, 2)
            n = self.bank[frame_index % 2, dy : dy + h, dx : dx + w]
            sigma = np.sqrt(self.shot * np.clip(img, 0, 4) + self.read)
            img = img + sigma * n
        q = np.clip(img * _LUT_SCALE, 0, len(_LUT) - 1).astype(np.int32)
        return _LUT[q]


def auto_exposure(linear: np.ndarray, key: float = 0.2, valid: np.ndarray | None = None) -> float:
    """Exposure that brings the frame's log-average luminance to ``key`` (as auto exposure does);
    ``valid`` excludes pixels that see nothing (outside a fisheye image circle)."""
    lum = linear[::4, ::4].mean(2)
    if valid is not None:
        lum = lum[valid[::4, ::4]]
    lavg = float(np.exp(np.mean(np.log(lum + 1e-4)))) if lum.size else key
    return key / max(lavg, 1e-4)


# ---------------------------------------------------------------------------------------------
# 8-bit post-processing


def cartoon(frame, albedo: np.ndarray, shade: np.ndarray, prim: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Flat-shaded cartoon look: posterised flat colours, banded lighting, black outlines."""
    albedo = albedo.copy()
    albedo[prim == -1] = (0.35, 0.55, 0.9)  # flat sky
    shade = np.where(prim == -1, np.percentile(shade, 90), shade)
    levels = np.array([0.45, 0.75, 1.0], np.float32)
    s = shade / max(float(np.percentile(shade, 90)), 1e-3)
    band = levels[np.clip((s * 3).astype(np.int32), 0, 2)]
    col = albedo ** (1 / 2.2)
    hsv = cv2.cvtColor(np.clip(col, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.6 + 0.1, 0, 1)
    col = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * band[..., None]
    img = np.clip(np.round(col * 5) / 5 * 255, 0, 255).astype(np.uint8)
    z = np.where(np.isfinite(depth), depth, 1e4).astype(np.float32)
    edges = np.zeros(prim.shape, bool)
    edges[:, 1:] |= prim[:, 1:] != prim[:, :-1]
    edges[1:, :] |= prim[1:, :] != prim[:-1, :]
    lz = np.log(z)
    edges[:, 1:] |= np.abs(lz[:, 1:] - lz[:, :-1]) > 0.05
    edges[1:, :] |= np.abs(lz[1:, :] - lz[:-1, :]) > 0.05
    th = max(1, round(img.shape[1] / 400))
    edges = cv2.dilate(edges.astype(np.uint8), np.ones((th, th), np.uint8)) > 0
    img[edges] = (15, 15, 20)
    return img


class Overlay:
    """Burnt-in graphics: channel logo, lower-third banner, subtitles, a big caption."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, seconds: float):
        self.rng_seed = int(rng.integers(1 << 30))
        self.items = rng.choice(
            ["logo", "banner", "subtitles", "caption"], size=int(rng.integers(2, 4)), replace=False
        ).tolist()
        self.logo_col = tx.jitter_color(rng, rng.uniform(30, 230, 3), 0.1)
        self.banner_col = tx.jitter_color(rng, rng.uniform(20, 200, 3), 0.1)
        self.words = [
            " ".join(tx.random_word(rng) for _ in range(int(rng.integers(2, 5)))).upper()
            for _ in range(int(seconds / 1.5) + 2)
        ]
        self.title = tx.random_word(rng, 2).upper()
        self.h, self.w = h, w

    def apply(self, img: np.ndarray, t: float) -> np.ndarray:
        img = img.copy()
        h, w = self.h, self.w
        if "logo" in self.items:
            r = int(0.07 * h)
            c = (w - int(0.1 * w), int(0.1 * h))
            cv2.circle(img, c, r, tuple(float(x) for x in self.logo_col), -1, cv2.LINE_AA)
            tx.put_text_fit(
                img, self.title[:3], (c[0] - r, c[1] - r // 2, 2 * r, r), (255, 255, 255), font=cv2.FONT_HERSHEY_DUPLEX
            )
        if "banner" in self.items:
            y0 = int(0.78 * h)
            band = img[y0 : y0 + int(0.12 * h)].astype(np.float32)
            img[y0 : y0 + int(0.12 * h)] = (band * 0.25 + self.banner_col * 0.75).astype(np.uint8)
            scroll = int(t * 0.15 * w) % (2 * w)
            tx.put_text_fit(
                img,
                self.words[0] + "  " + self.words[1],
                (w - scroll, y0, w, int(0.12 * h)),
                (255, 255, 255),
                font=cv2.FONT_HERSHEY_SIMPLEX,
            )
        if "subtitles" in self.items:
            txt = self.words[int(t / 1.5) % len(self.words)].lower()
            y0 = int(0.9 * h)
            tx.put_text_fit(
                img,
                txt,
                (0.15 * w, y0, 0.7 * w, 0.07 * h),
                (0, 0, 0),
                font=cv2.FONT_HERSHEY_SIMPLEX,
                thickness=max(2, h // 120),
            )
            tx.put_text_fit(img, txt, (0.15 * w, y0, 0.7 * w, 0.07 * h), (255, 255, 80), font=cv2.FONT_HERSHEY_SIMPLEX)
        if "caption" in self.items:
            tx.put_text_fit(
                img,
                self.title,
                (0.1 * w, 0.3 * h, 0.8 * w, 0.25 * h),
                (255, 255, 255),
                font=cv2.FONT_HERSHEY_TRIPLEX,
                thickness=max(2, h // 60),
            )
        return img
