"""Training TracksTo4D on our own tracks (``dynpose train tracksto4d``), no 3-D supervision.

The clips of a synthetic suite (their ground truth unused for training) and any unlabelled videos
are sampled as the annotation pipeline samples them and tracked with our default tracker; the
tracks are cached next to the checkpoint. Each step draws one clip and a segment of 20-50 frames
with 100 tracks (the paper's sampling, appendix B.3) and takes an Adam step on the paper's loss.
Held-out clips (``eval_clips``) never train; they are scored at the end: the motion level's ROC
AUC against the ground-truth object ids, ATE/RPE of the network's poses, inference seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dynpose.domain.annotate.pipeline import AnnotateConfig
from dynpose.domain.synth.suites import select_clips
from dynpose.domain.tracksto4d import infer
from dynpose.domain.tracksto4d.data import TrackTensor, sample_segment, video_tracks
from dynpose.domain.tracksto4d.model import NetConfig, TracksTo4D, losses
from dynpose.domain.video import VideoError, sample_frames
from dynpose.evaluation.ablation import roc_auc
from dynpose.evaluation.ground_truth import load_ground_truth
from dynpose.evaluation.markdown import machine_line, markdown_table
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory

NAN = float("nan")


@dataclass
class TrainConfig:
    steps: int = 14000  # about 40 minutes on 2 cores at the default sizes
    lr: float = 5e-4  # Adam, cosine-decayed to lr_final (the paper: 1e-4 over a week of GPU training)
    lr_final: float = 5e-5
    frames: tuple[int, int] = (20, 50)  # segment length range (appendix B.3)
    warmup_frames: tuple[int, int] = (20, 22)  # ... and for the first warmup_steps (the paper: 50 epochs)
    warmup_steps: int = 500
    points: int = 100
    batch: int = 4  # segments per step (one clip each, same length)
    max_minutes: float = 60.0  # stop early at this wall time
    seed: int = 0
    net: NetConfig = field(default_factory=NetConfig)


@dataclass
class Clip:
    name: str
    video: str
    gt_dir: str | None = None  # ground truth, for held-out scoring only


def suite_clips(suite_dir: str | Path, clips: list[str] | None = None, exclude: list[str] | None = None) -> list[Clip]:
    """A synthetic suite's clips whose names start with one of ``clips`` (default all), ``exclude``
    prefixes removed; a suite may have none of them (several suites share one selection)."""
    root = Path(suite_dir)
    out = []
    for c in select_clips(root):
        if (clips and not c["name"].startswith(tuple(clips))) or (exclude and c["name"].startswith(tuple(exclude))):
            continue
        out.append(Clip(c["name"], str(root / c["video"]), str(root / c["gt_dir"]) if c.get("gt_dir") else None))
    return out


def _cache_path(cache_dir: Path, video: str) -> Path:
    st = os.stat(video)
    key = hashlib.sha1(f"{os.path.abspath(video)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir / f"{Path(video).stem}_{key}.npz"


def clip_tracks(clip: Clip, cache_dir: Path) -> tuple[TrackTensor, np.ndarray, np.ndarray, float]:
    """(tracks, timestamps, source frame indices, tracking seconds) of a clip, from the cache or tracked now."""
    path = _cache_path(cache_dir, clip.video)
    if path.exists():
        z = np.load(path)
        t = TrackTensor(z["xy"], z["visible"], int(z["width"]), int(z["height"]), float(z["focal"]), z["source"])
        return t, z["timestamps"], z["source_indices"], float(z["tracking_s"])
    cfg = AnnotateConfig()
    sampled = sample_frames(clip.video, cfg.fps, cfg.max_side, cfg.max_frames)
    t0 = time.perf_counter()
    t = video_tracks(sampled.frames, cfg=cfg.tracking)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(
        tmp,
        xy=t.xy,
        visible=t.visible,
        width=t.width,
        height=t.height,
        focal=t.focal,
        source=t.source,
        timestamps=sampled.timestamps,
        source_indices=sampled.source_indices,
        tracking_s=seconds,
    )
    tmp.replace(path)
    return t, sampled.timestamps, sampled.source_indices, seconds


def _batch(tracks: list[TrackTensor], rng: np.random.Generator, cfg: TrainConfig, step: int) -> torch.Tensor | None:
    frames = cfg.warmup_frames if step < cfg.warmup_steps else cfg.frames
    n = int(rng.integers(frames[0], frames[1] + 1))
    samples = []
    for _ in range(cfg.batch * 4):  # clips shorter than n or with too few tracks are redrawn
        s = sample_segment(tracks[int(rng.integers(len(tracks)))], rng, (n, n), cfg.points)
        if s is not None:
            samples.append(s)
        if len(samples) == cfg.batch:
            return torch.from_numpy(np.stack(samples))
    return torch.from_numpy(np.stack(samples)) if samples else None


def train(
    train_clips: list[Clip],
    out: str | Path,
    cfg: TrainConfig | None = None,
    eval_clips: list[Clip] | None = None,
    progress=None,
    log=print,
) -> dict:
    """Train, save the checkpoint at ``out`` and write ``<out>.md`` (report), ``<out>.json`` (history)
    and ``<out>.loss.png``. ``progress(step, steps, terms)`` is called every step. Returns the summary."""
    cfg = cfg or TrainConfig()
    out = Path(out)
    cache = out.parent / f"{out.stem}_tracks"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    tracks, trained_on = [], []
    for i, clip in enumerate(train_clips):
        log(f"tracking {i + 1}/{len(train_clips)} {clip.name}")
        try:
            tracks.append(clip_tracks(clip, cache)[0])
            trained_on.append(clip.name)
        except VideoError as exc:  # a bad file costs its own tracks, not the training
            log(f"skipping {clip.name}: {exc.status}: {exc.message}")
    usable = [t for t in tracks if t.num_frames >= cfg.frames[0] and t.num_tracks >= cfg.points]
    if not usable:
        raise ValueError(f"no training clip has {cfg.frames[0]} frames and {cfg.points} tracks")
    tracking_s = time.perf_counter() - t0
    model = TracksTo4D(cfg.net)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.steps, 1), eta_min=cfg.lr_final)
    history: list[dict] = []
    t0 = time.perf_counter()
    step = 0
    for step in range(cfg.steps):
        batch = _batch(usable, rng, cfg, step)
        if batch is None:
            continue
        terms = losses(model(batch), batch, detach_static=True)
        opt.zero_grad()
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        history.append({"step": step, **{k: float(v.detach()) for k, v in terms.items()}})
        if progress:
            progress(step + 1, cfg.steps, history[-1])
        if time.perf_counter() - t0 > cfg.max_minutes * 60:
            log(f"stopping at step {step + 1}: {cfg.max_minutes} min reached")
            break
    train_s = time.perf_counter() - t0
    meta = {
        "trained_on": trained_on,
        "steps": step + 1,
        "train_s": train_s,
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "net"},
        "final_loss": _smoothed(history, "total"),
    }
    infer.save_checkpoint(out, model, meta)
    infer.load_checkpoint.cache_clear()
    summary = {**meta, **model.describe(), "tracking_s": tracking_s, "checkpoint": str(out)}
    summary["held_out"], summary["gamma_auc_pooled"] = evaluate(model.eval(), eval_clips or [], cache, log=log)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "history": history}, indent=1, default=float))
    _plot(history, out.with_suffix(".loss.png"))
    out.with_suffix(".md").write_text(report_markdown(summary, history, out.with_suffix(".loss.png").name))
    return summary


def _smoothed(history: list[dict], key: str, last: int = 100) -> float:
    vals = [h[key] for h in history[-last:]]
    return float(np.mean(vals)) if vals else NAN


def track_labels(tracks: TrackTensor, gt, source_indices: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Whether each chosen track is dynamic: most of its observations fall on a ground-truth object."""
    on, seen = np.zeros(len(chosen)), np.zeros(len(chosen))
    for i in range(tracks.num_frames):
        vis = tracks.visible[i, chosen]
        if not vis.any():
            continue
        on[vis] += gt.on_object(int(source_indices[i]), tracks.xy[i, chosen][vis], tracks.width, tracks.height)
        seen[vis] += 1
    return on > 0.5 * np.maximum(seen, 1)


def evaluate(model: TracksTo4D, clips: list[Clip], cache: Path, log=print) -> tuple[list[dict], float]:
    """Per held-out clip: gamma ROC AUC, ATE / RPE without and with BA, seconds (tracking, network, BA);
    and the AUC pooled over the clips' tracks."""
    rows, pooled = [], ([], [])
    for clip in clips:
        if not clip.gt_dir:
            continue
        log(f"held-out {clip.name}")
        try:
            tracks, timestamps, source_indices, tracking_s = clip_tracks(clip, cache)
        except VideoError as exc:
            log(f"skipping held-out {clip.name}: {exc.status}: {exc.message}")
            continue
        gt = load_ground_truth(clip.gt_dir)
        row = {"clip": clip.name, "frames": tracks.num_frames, "tracking_s": tracking_s}
        for ba in (False, True):
            res = infer.run(model, tracks, timestamps, infer.InferConfig(ba=ba))
            traj = evaluate_trajectory(res, gt.poses)
            tag = "_ba" if ba else ""
            row.update({f"ate{tag}": traj["ate"], f"rpe_t{tag}": traj["rpe_t"], f"rpe_r{tag}": traj["rpe_r"]})
            row[f"registered{tag}"] = res.registered_ratio
            if not ba:
                labels = track_labels(tracks, gt, source_indices, res.extra["track_index"])
                row["gamma_auc"] = roc_auc(res.extra["gamma"], labels)
                row["dynamic_tracks"] = float(labels.mean())
                row["network_s"] = res.extra["network_s"]
                pooled[0].append(res.extra["gamma"])
                pooled[1].append(labels)
            else:
                row["ba_s"] = res.extra.get("ba_s", NAN)
        row["s_per_50_frames"] = (row["tracking_s"] + row["network_s"]) * 50 / max(tracks.num_frames, 1)
        rows.append(row)
    pooled_auc = roc_auc(np.concatenate(pooled[0]), np.concatenate(pooled[1])) if rows else NAN
    return rows, pooled_auc


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(16, 3))
    steps = [h["step"] for h in history]
    for ax, key in zip(axes, ("total", "reproject", "static", "negative", "sparse")):
        vals = np.array([h[key] for h in history])
        ax.plot(steps, vals, lw=0.3, alpha=0.4)
        if len(vals) >= 50:
            ax.plot(steps[49:], np.convolve(vals, np.ones(50) / 50, "valid"), lw=1.2)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report_markdown(summary: dict, history: list[dict], plot_name: str) -> str:
    lines = [
        "# TracksTo4D training",
        "",
        f"{machine_line()}; {summary['steps']} steps in {summary['train_s'] / 60:.1f} min "
        f"(tracking the clips first: {summary['tracking_s']:.0f} s); {summary['parameters']} parameters, "
        f"network {summary['config']}.",
        "",
        f"Trained on {len(summary['trained_on'])} clips: {', '.join(summary['trained_on'])}.",
        "",
        f"Loss (mean of the last 100 steps): {summary['final_loss']:.4f}; first step: "
        f"{history[0]['total'] if history else NAN:.4f}.",
        "",
        f"![loss curve]({plot_name})",
        "",
    ]
    if summary["held_out"]:
        lines += ["## Held-out clips", "", markdown_table(summary["held_out"]), ""]
        auc = summary["gamma_auc_pooled"]
        lines += [f"Motion level ROC AUC pooled over the held-out clips' tracks: {auc:.3f}.", ""]
    return "\n".join(lines)
