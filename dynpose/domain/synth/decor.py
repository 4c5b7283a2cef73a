"""Composite textures: building facades, decorated room walls, ceilings, window views.

All take the face size in metres and texels per metre and return uint8 RGB of the matching size
(``textures.size_px``); callers derive the exact texels-per-metre from the returned shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from dynpose.domain.synth import textures as tx

PASTELS = [
    (225, 220, 205),
    (205, 215, 220),
    (230, 215, 190),
    (200, 210, 190),
    (235, 230, 225),
    (215, 195, 185),
    (190, 195, 205),
]
FACADE_COLORS = [
    (200, 185, 160),
    (170, 150, 130),
    (220, 210, 190),
    (150, 160, 170),
    (190, 120, 90),
    (210, 200, 170),
    (140, 130, 120),
]


def _base(rng, w, h, tpm, style):
    if style == "bricks":
        return tx.bricks(rng, w, h, tpm).astype(np.float32)
    if style == "concrete":
        return tx.concrete(rng, w, h, tpm).astype(np.float32)
    if style == "tiles":
        base = tx.jitter_color(rng, FACADE_COLORS[int(rng.integers(len(FACADE_COLORS)))], 0.1)
        return tx.tiles(
            rng, w, h, tpm, tile_m=rng.uniform(0.1, 0.3), palette=[base, base * 0.93], grout=base * 0.6, vein=0.0
        ).astype(np.float32)
    return tx.plaster(
        rng, w, h, tpm, tx.jitter_color(rng, FACADE_COLORS[int(rng.integers(len(FACADE_COLORS)))], 0.08)
    ).astype(np.float32)


def _window(rng, w, h, frame_rgb, lit_p=0.15):
    """A window: frame, glass reflecting a blurred sky/street, sometimes curtains or a lit room."""
    img = np.empty((h, w, 3), np.float32)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    refl = tx.colorize((60, 75, 95), tx.noise(rng, h, w, max(3, w / 3), 4), 0.4)
    img[:] = refl + 90 * (1 - yy) * np.array([0.7, 0.8, 1.0], np.float32)
    r = rng.random()
    if r < 0.3:  # curtains
        c = tx.jitter_color(rng, rng.uniform(60, 230, 3), 0.1)
        cw = int(w * rng.uniform(0.2, 0.5))
        img[:, :cw] = c * (1 + 0.15 * np.sin(np.arange(cw) / 2.0))[None, :, None]
    elif r < 0.3 + lit_p:  # a room seen through the glass
        img[:] = img * 0.4 + 0.6 * tx.colorize(
            tx.jitter_color(rng, (190, 170, 140), 0.15), tx.noise(rng, h, w, max(3, w / 2), 3), 0.25
        )
    f = max(1, int(0.07 * min(w, h)))
    img[:f], img[-f:], img[:, :f], img[:, -f:] = frame_rgb, frame_rgb, frame_rgb, frame_rgb
    img[:, w // 2 - f // 2 : w // 2 + (f + 1) // 2] = frame_rgb  # mullion
    if h > 2.2 * f * 4:
        img[int(h * 0.35) : int(h * 0.35) + f] = frame_rgb
    return img


def facade(rng, w_m: float, h_m: float, tpm: float, street_level: bool = True, style: str | None = None) -> np.ndarray:
    w, h = tx.size_px(w_m, h_m, tpm, 1792)
    sx, sy = w / w_m, h / h_m
    style = style or rng.choice(["bricks", "plaster", "plaster", "concrete", "tiles"])
    img = _base(rng, w, h, min(sx, sy), style)
    frame = tx.jitter_color(
        rng, rng.choice([(240, 240, 235), (60, 50, 45), (120, 90, 60), (40, 60, 50), (170, 170, 175)]), 0.05
    )
    ground_h = rng.uniform(3.6, 4.6) if street_level else 0.0
    storey = rng.uniform(2.9, 3.6)
    spacing = rng.uniform(1.8, 3.2)
    win_w, win_h = rng.uniform(0.8, 1.4), rng.uniform(1.2, 1.8)
    ncols = max(1, int((w_m - 0.6) / spacing))
    x_off = (w_m - ncols * spacing) / 2 + spacing / 2
    z = ground_h
    while z + storey <= h_m - 0.4:
        top_m = h_m - (z + storey)  # texture v grows downwards from the roof line
        y0 = int((top_m + (storey - win_h) * 0.6) * sy)
        for c in range(ncols):
            if rng.random() < 0.05:
                continue
            x0 = int((x_off + c * spacing - win_w / 2) * sx)
            ww, hh = int(win_w * sx), int(win_h * sy)
            if ww > 4 and hh > 4:
                tx.paste(img, _window(rng, ww, hh, frame), x0, y0)
                img[y0 + hh : y0 + hh + max(1, int(0.06 * sy)), x0 - 2 : x0 + ww + 2] *= 0.6  # sill shadow
        img[int(top_m * sy) : int(top_m * sy) + max(1, int(0.12 * sy))] *= 0.85  # cornice line
        z += storey
    if street_level:
        g0 = int((h_m - ground_h) * sy)
        gimg = img[g0:]
        gimg[:] = _base(rng, w, h - g0, min(sx, sy), rng.choice(["concrete", "tiles", "plaster"]))[: h - g0]
        # Shop windows and doors with a sign band above.
        x = rng.uniform(0.2, 1.0)
        while x < w_m - 1.5:
            sw = min(rng.uniform(1.5, 4.5), w_m - x - 0.3)
            kind = rng.random()
            px0, px1 = int(x * sx), int((x + sw) * sx)
            if kind < 0.6:
                win = _window(rng, max(4, px1 - px0), max(4, int(2.4 * sy)), frame, lit_p=0.5)
                tx.paste(img, win, px0, h - int(2.6 * sy))
            elif kind < 0.8:
                door = tx.wood(rng, max(4, int(1.1 * sx)), max(4, int(2.2 * sy)), min(sx, sy))
                tx.paste(img, door, px0, h - int(2.2 * sy))
            else:
                for k in range(int(rng.integers(1, 4))):  # posters on the wall
                    pw, ph = int(rng.uniform(0.5, 0.9) * sx), int(rng.uniform(0.7, 1.3) * sy)
                    tx.paste(
                        img,
                        tx.poster(rng, max(8, pw), max(8, ph)).astype(np.float32),
                        px0 + k * (pw + 4),
                        h - int(rng.uniform(1.6, 2.4) * sy),
                    )
            if rng.random() < 0.7:  # sign band with the shop's name
                band_col = tx.jitter_color(rng, rng.uniform(20, 235, 3), 0.1)
                y0, y1 = h - int(3.3 * sy), h - int(2.75 * sy)
                img[y0:y1, px0:px1] = band_col
                ink = (245, 245, 240) if band_col.mean() < 128 else (20, 20, 25)
                tx.put_text_fit(img, tx.random_word(rng).upper(), (px0, y0, px1 - px0, y1 - y0), ink, rng)
            x += sw + rng.uniform(0.3, 1.2)
        tx.graffiti(rng, img, min(sx, sy), int(rng.integers(0, 4)) if style != "tiles" else 0)
    img = tx.dirt(rng, img, 0.12, 4.0 * min(sx, sy))
    # Grime near the ground.
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img *= 1 - 0.25 * np.clip((yy - (1 - 0.6 / h_m)) / (0.6 / h_m), 0, 1)
    return tx.to_u8(img)


def side_wall(rng, w_m, h_m, tpm) -> np.ndarray:
    w, h = tx.size_px(w_m, h_m, tpm, 1024)
    img = _base(rng, w, h, min(w / w_m, h / h_m), rng.choice(["bricks", "plaster", "concrete"]))
    if rng.random() < 0.5:
        tx.graffiti(rng, img, min(w / w_m, h / h_m), int(rng.integers(1, 4)))
    return tx.to_u8(tx.dirt(rng, img, 0.1, 2.0 * min(w / w_m, h / h_m)))


def notice_board(rng, w, h) -> np.ndarray:
    """Cork board covered with notes: dense, distinctive small features."""
    img = tx.colorize((170, 125, 80), tx.grain(rng, h, w, 0.8), 0.08)
    for _ in range(int(w * h / 1500) + 3):
        nw, nh = int(rng.uniform(0.12, 0.3) * w), int(rng.uniform(0.12, 0.3) * h)
        note = np.empty((max(nh, 6), max(nw, 6), 3), np.float32)
        note[:] = tx.jitter_color(
            rng, rng.choice([(245, 245, 240), (250, 240, 140), (180, 220, 250), (250, 190, 200)]), 0.03
        )
        for k in range(int(rng.integers(2, 6))):
            y = int((k + 1) * note.shape[0] / 7)
            cv2.line(note, (2, y), (int(note.shape[1] * rng.uniform(0.4, 0.95)), y), (40, 40, 60), 1, cv2.LINE_AA)
        tx.paste(img, note, int(rng.integers(0, w)), int(rng.integers(0, h)))
    f = max(2, w // 30)
    img[:f], img[-f:], img[:, :f], img[:, -f:] = (120, 90, 60), (120, 90, 60), (120, 90, 60), (120, 90, 60)
    return tx.to_u8(img)


def whiteboard(rng, w, h) -> np.ndarray:
    img = np.full((h, w, 3), 238, np.float32) + 4 * tx.grain(rng, h, w)[..., None]
    for _ in range(int(rng.integers(3, 9))):
        col = tuple(float(c) for c in rng.choice([(30, 30, 140), (20, 20, 20), (160, 30, 30), (20, 120, 40)]))
        y = int(rng.uniform(0.1, 0.9) * h)
        tx.put_text_fit(
            img,
            " ".join(tx.random_word(rng) for _ in range(int(rng.integers(1, 4)))),
            (w * rng.uniform(0.03, 0.3), y - h * 0.06, w * rng.uniform(0.3, 0.65), h * 0.1),
            col,
            font=cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
        )
    if rng.random() < 0.7:
        pts = (np.cumsum(rng.normal(0, w / 12, (10, 2)), 0) + (w / 2, h / 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, (40, 40, 160), max(1, w // 200), cv2.LINE_AA)
    f = max(2, w // 60)
    img[:f], img[-f:], img[:, :f], img[:, -f:] = (170, 170, 175), (170, 170, 175), (170, 170, 175), (170, 170, 175)
    return tx.to_u8(img)


def room_wall(rng, w_m: float, h_m: float, tpm: float, door: bool = False) -> tuple[np.ndarray, list]:
    """A decorated interior wall; also returns window rectangles (u0, v0, u1, v1) in metres."""
    w, h = tx.size_px(w_m, h_m, tpm, 3072)
    sx, sy = w / w_m, h / h_m
    s = min(sx, sy)
    style = rng.choice(["plaster", "plaster", "bricks", "wallpaper", "panel"])
    col = tx.jitter_color(rng, PASTELS[int(rng.integers(len(PASTELS)))], 0.06)
    if style == "bricks":
        img = tx.bricks(
            rng, w, h, s, palette=[tx.jitter_color(rng, (175, 95, 70), 0.1), tx.jitter_color(rng, (150, 80, 60), 0.1)]
        ).astype(np.float32)
    else:
        img = tx.plaster(rng, w, h, s, col).astype(np.float32)
    if style == "wallpaper":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = rng.uniform(0.015, 0.04) * s
        pat = (np.sin(xx / p) + np.sin((yy + 0.5 * p * np.sin(xx / p)) / p)) > rng.uniform(0.6, 1.2)
        img[pat] *= np.float32(rng.uniform(0.7, 0.88))
    if style == "panel":  # wood panelling on the lower part
        ph = int(rng.uniform(0.9, 1.3) * sy)
        img[h - ph :] = tx.wood(rng, w, ph, s).astype(np.float32)
    # Skirting board.
    img[h - max(2, int(0.09 * sy)) :] = tx.jitter_color(
        rng, (235, 235, 230) if rng.random() < 0.6 else (90, 60, 40), 0.05
    )
    occupied: list[tuple[int, int, int, int]] = []

    def place(iw, ih, y_range, tries=30):
        for _ in range(tries):
            x0 = int(rng.integers(int(0.15 * sx), max(int(0.15 * sx) + 1, w - iw - int(0.15 * sx))))
            y0 = int(rng.uniform(*y_range) * sy)
            box = (x0 - 6, y0 - 6, x0 + iw + 6, y0 + ih + 6)
            if y0 < 0 or y0 + ih > h:
                continue
            if all(box[2] < o[0] or box[0] > o[2] or box[3] < o[1] or box[1] > o[3] for o in occupied):
                occupied.append(box)
                return x0, y0
        return None

    windows = []
    if door:
        dw, dh = int(rng.uniform(0.85, 1.0) * sx), int(2.1 * sy)
        pos = place(dw, dh, (h_m - 2.1, h_m - 2.1))
        if pos:
            d = tx.wood(rng, dw, dh, s).astype(np.float32)
            cv2.circle(d, (int(dw * 0.85), int(dh * 0.5)), max(2, int(0.03 * s)), (200, 190, 150), -1, cv2.LINE_AA)
            tx.paste(img, d, *pos)
    if rng.random() < 0.5 and w_m > 4:
        for _ in range(int(rng.integers(1, 3))):
            ww, wh = rng.uniform(1.0, 1.8), rng.uniform(1.2, min(1.9, h_m - 1.3))
            pos = place(int(ww * sx), int(wh * sy), (max(0.3, h_m - 1.0 - wh), max(0.3, h_m - 0.9 - wh)))
            if pos:
                windows.append((pos[0] / sx, pos[1] / sy, pos[0] / sx + ww, pos[1] / sy + wh))
    n_items = int(rng.integers(3, 7) * w_m / 6) + 2
    for _ in range(n_items):
        k = rng.random()
        if k < 0.35:
            iw, ih = int(rng.uniform(0.45, 0.9) * sx), int(rng.uniform(0.6, 1.2) * sy)
            gen = tx.poster
        elif k < 0.65:
            iw, ih = int(rng.uniform(0.4, 1.4) * sx), int(rng.uniform(0.35, 1.0) * sy)
            gen = tx.painting
        elif k < 0.8:
            iw, ih = int(rng.uniform(0.8, 1.6) * sx), int(rng.uniform(0.6, 1.0) * sy)
            gen = notice_board
        elif k < 0.9:
            iw, ih = int(rng.uniform(1.2, 2.2) * sx), int(rng.uniform(0.8, 1.2) * sy)
            gen = whiteboard
        else:
            iw = ih = int(rng.uniform(0.25, 0.4) * s)
            gen = None
        pos = place(iw, ih, (max(0.2, h_m - 2.5), max(0.25, h_m - 1.0 - ih / sy)))
        if pos is None:
            continue
        if gen is None:  # wall clock
            c = (pos[0] + iw // 2, pos[1] + ih // 2)
            cv2.circle(img, c, iw // 2, (245, 245, 240), -1, cv2.LINE_AA)
            cv2.circle(img, c, iw // 2, (30, 30, 30), max(1, iw // 25), cv2.LINE_AA)
            for a in rng.uniform(0, 2 * np.pi, 2):
                cv2.line(
                    img,
                    c,
                    (int(c[0] + 0.4 * iw * np.cos(a)), int(c[1] + 0.4 * iw * np.sin(a))),
                    (20, 20, 20),
                    max(1, iw // 30),
                    cv2.LINE_AA,
                )
        else:
            tx.paste(img, gen(rng, max(8, iw), max(8, ih)).astype(np.float32), *pos)
            # Soft drop shadow under hanging items.
            img[pos[1] + ih : pos[1] + ih + max(1, int(0.02 * sy)), pos[0] : pos[0] + iw] *= 0.8
    for _ in range(int(rng.integers(1, 4))):  # switches and sockets
        x0, y0 = int(rng.integers(0, max(1, w - 20))), int((h_m - rng.choice([0.3, 1.1])) * sy)
        sz = max(3, int(0.08 * s))
        cv2.rectangle(img, (x0, y0), (x0 + sz, y0 + sz), (240, 240, 238), -1)
        cv2.rectangle(img, (x0, y0), (x0 + sz, y0 + sz), (150, 150, 150), 1)
    return tx.to_u8(tx.dirt(rng, img, 0.12, 2.0 * s)), windows


def ceiling(rng, w_m, h_m, tpm) -> np.ndarray:
    w, h = tx.size_px(w_m, h_m, tpm, 2048)
    s = min(w / w_m, h / h_m)
    if rng.random() < 0.5:
        img = tx.tiles(
            rng, w, h, s, tile_m=0.6, palette=[(225, 224, 218), (215, 214, 208)], grout=(170, 170, 172)
        ).astype(np.float32)
        img *= (1 + 0.1 * tx.grain(rng, h, w, 0.8))[..., None]
    else:
        img = tx.plaster(rng, w, h, s, (236, 234, 228)).astype(np.float32)
    return tx.to_u8(img)


def window_view(rng, w, h) -> np.ndarray:
    """What an interior window shows: bright sky and blurred facades (rendered emissive)."""
    img = tx.sky(rng, w, h, overcast=rng.uniform(0, 0.6)).astype(np.float32) * 1.05
    x = 0
    while x < w:
        bw = int(rng.uniform(0.15, 0.4) * w)
        bh = int(rng.uniform(0.2, 0.7) * h)
        img[h - bh :, x : x + bw] = tx.jitter_color(rng, (180, 175, 165), 0.15)
        for yy in range(h - bh + 4, h - 4, max(4, h // 12)):
            for xx in range(x + 3, x + bw - 4, max(4, w // 16)):
                img[yy : yy + max(2, h // 30), xx : xx + max(2, w // 40)] *= 0.6
        x += bw + int(rng.integers(0, max(1, w // 10)))
    img = cv2.GaussianBlur(img, (0, 0), max(0.8, w / 300))
    f = max(2, w // 40)
    img[:f], img[-f:], img[:, :f], img[:, -f:] = (235, 235, 232), (235, 235, 232), (235, 235, 232), (235, 235, 232)
    img[:, w // 2 - f // 2 : w // 2 + f // 2] = (235, 235, 232)
    return tx.to_u8(img)


def drawers(rng, w_m, h_m, tpm, base=None) -> np.ndarray:
    """Cabinet front: wood or painted panel with drawer seams and handles."""
    w, h = tx.size_px(w_m, h_m, tpm, 1024)
    s = min(w / w_m, h / h_m)
    img = (
        tx.wood(rng, w, h, s)
        if rng.random() < 0.5
        else tx.plaster(rng, w, h, s, tx.jitter_color(rng, rng.uniform(60, 230, 3), 0.05))
    ).astype(np.float32)
    rows = int(rng.integers(1, 4))
    cols = max(1, int(round(w_m / 0.6)))
    for r in range(rows + 1):
        img[min(h - 1, int(r * h / rows)) : min(h, int(r * h / rows) + 2)] *= 0.4
    for c in range(cols + 1):
        img[:, min(w - 1, int(c * w / cols)) : min(w, int(c * w / cols) + 2)] *= 0.4
    for r in range(rows):
        for c in range(cols):
            cx, cy = int((c + 0.5) * w / cols), int((r + 0.3) * h / rows)
            cv2.line(
                img,
                (cx - int(0.06 * s), cy),
                (cx + int(0.06 * s), cy),
                (190, 190, 195),
                max(1, int(0.012 * s)),
                cv2.LINE_AA,
            )
    return tx.to_u8(img)
