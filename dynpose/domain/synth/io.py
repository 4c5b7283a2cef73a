"""Writing a rendered clip: the mp4 and its ground-truth folder (see docs/synthetic.md)."""

from __future__ import annotations

import json
import pickle
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dynpose.domain.camera import PoseResult, write_cameras_pkl, write_tum
from dynpose.domain.synth.gt import COLUMNS
from dynpose.domain.synth.variants import label


def encode_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 20, preset: str = "medium") -> None:
    """H.264 (libx264, yuv420p) mp4 with frame k at pts k / fps."""
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        # x264's macroblock-tree rate control reads something uninitialised in this build: the same
        # frames encoded twice decode to frames up to 40 levels apart (measured), so every render of
        # a suite was a different benchmark. Without it the output is byte-identical run to run.
        stream.options = {"crf": str(int(crf)), "preset": preset, "x264-params": "mbtree=0"}
        for k, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_clip(clip, out_dir: str | Path, name: str, dense: bool = True) -> dict:
    """Write ``<out_dir>/<name>.mp4`` and ``<out_dir>/<name>/`` (ground truth); return the manifest
    entry (paths relative to ``out_dir``). ``dense=False`` skips depth.npz (large) only."""
    out_dir = Path(out_dir)
    gt = out_dir / name
    (gt / "masks").mkdir(parents=True, exist_ok=True)
    spec, meta = clip.spec, dict(clip.meta)
    encode_mp4(
        out_dir / f"{name}.mp4",
        clip.frames,
        spec.fps,
        spec.crf if meta["variant"] != "low_res" else max(spec.crf, 32),
        spec.preset,
    )
    n = len(clip.timestamps)
    registered = np.ones(n, bool)
    write_tum(gt / "trajectory.tum", clip.timestamps, clip.poses_w2c, registered)
    result = PoseResult(
        clip.timestamps, clip.poses_w2c, registered, clip.intrinsics_at(0), extra={"source": "synthetic"}
    )
    write_cameras_pkl(gt / "cameras.pkl", result)
    if not np.allclose(clip.intrinsics, clip.intrinsics[0]):
        # Zoom clips: write_cameras_pkl repeats the first frame's intrinsics; store the real ones.
        with open(gt / "cameras.pkl", "rb") as f:
            d = pickle.load(f)
        d["intrinsics"] = np.asarray(clip.intrinsics, np.float64)
        with open(gt / "cameras.pkl", "wb") as f:
            pickle.dump(d, f)
    if dense:
        np.savez_compressed(gt / "depth.npz", depth=clip.depth.astype(np.float16))
    ids = clip.object_ids
    dtype = np.uint8 if ids.max(initial=0) < 256 else np.uint16
    for k in range(n):
        cv2.imwrite(str(gt / "masks" / f"{k:05d}.png"), ids[k].astype(dtype))
    crn = clip.correspondences or {c: np.zeros(0) for c in COLUMNS}
    pq.write_table(pa.table({c: crn[c] for c in COLUMNS}), gt / "correspondences.parquet", compression="zstd")
    category, suitable, reason = label(meta["variant"])
    meta.update(
        name=name,
        label_suitable=suitable,
        reason=reason,
        intrinsics=clip.intrinsics.tolist()
        if not np.allclose(clip.intrinsics, clip.intrinsics[0])
        else clip.intrinsics[0].tolist(),
        files={
            "video": f"{name}.mp4",
            "trajectory": "trajectory.tum",
            "cameras": "cameras.pkl",
            "depth": "depth.npz" if dense else None,
            "masks": "masks/%05d.png",
            "correspondences": "correspondences.parquet",
        },
    )
    (gt / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
    return {
        "name": name,
        "video": f"{name}.mp4",
        "gt_dir": name,
        "suitable": suitable,
        "category": category,
        "variant": meta["variant"],
        "trajectory": meta["trajectory"],
        "layout": meta["layout"],
        "fps": float(spec.fps),
        "width": int(clip.width),
        "height": int(clip.height),
        "n_frames": int(n),
        "seconds": float(meta["seconds"]),
        "seed": int(spec.seed),
        "reason": reason,
    }


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
