"""Ablation benchmark of the annotation pipeline on a synthetic suite (``dynpose bench annotation``).

A variant is a dict of overrides of :class:`AnnotateConfig` sections, e.g.
``{"sfm": {"select": "self_consistency"}, "tracking": {"stride": 5}}``. Per clip, dynamic masks and
tracklets are computed once per distinct (sampling, masks, tracking) configuration among the
variants and cached in ``OUT/cache/<clip>/<key>.pkl`` (the key also hashes the source of the
modules that compute them, so a code change recomputes); every variant then runs
:func:`annotate_frames` on them and is scored against the ground truth: ATE / RPE, focal error,
SfM self-checks, mask IoU and, where the pipeline reports them, its SfM hypotheses and the motion
level (``gamma``) of the tracked points.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import pickle
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import rankdata, spearmanr

from dynpose.domain.annotate.masks import compute_dynamic_masks
from dynpose.domain.annotate.masks_eval import mask_scores, score_masks
from dynpose.domain.annotate.motion_level import relative_motion_level
from dynpose.domain.annotate.pipeline import AnnotateConfig, annotate_frames
from dynpose.domain.annotate.tracking import track_grid
from dynpose.domain.synth.suites import select_clips
from dynpose.domain.video import sample_frames
from dynpose.evaluation.ground_truth import load_ground_truth
from dynpose.evaluation.markdown import machine_line, markdown_table
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory

NAN = float("nan")

STUDIES: dict[str, dict[str, dict]] = {
    "baseline": {"today": {}},
    "selection": {"first": {"sfm": {"select": "first"}}, "self_consistency": {"sfm": {"select": "self_consistency"}}},
    "motion": {"off": {"sfm": {"motion_level": False}}, "on": {"sfm": {"motion_level": True}}},
    "refinement": {
        "off": {"sfm": {"weighted_refine": False}},
        "sigma4": {"sfm": {"weighted_refine": True, "sigma_max": 4.0}},
        "sigma2": {"sfm": {"weighted_refine": True, "sigma_max": 2.0}},
    },
    "bridging": {
        "off": {"sfm": {"bridge": False}, "tracking": {"restart": False}},
        "on": {"sfm": {"bridge": True}, "tracking": {"restart": True}},
    },
}

# What the cached masks and tracklets depend on besides their config sections.
_SHARED_SOURCES = (
    "domain/video.py",
    "domain/annotate/tracking.py",
    "domain/annotate/flow.py",
    "domain/annotate/masks*.py",
)


@dataclass
class AblationResult:
    tables: list[tuple[str, list[dict]]]
    report: Path
    records: list[dict]


def variant_config(overrides: dict, base: AnnotateConfig | None = None) -> AnnotateConfig:
    """``base`` (default: the defaults) with ``overrides`` applied section by section.

    Unknown sections or fields raise ValueError naming them; JSON lists become tuples where the
    default is a tuple (``pair_gaps``)."""
    cfg = base or AnnotateConfig()
    sections = {f.name: f for f in dataclasses.fields(AnnotateConfig)}
    changes = {}
    for section, values in overrides.items():
        if section not in sections:
            raise ValueError(f"unknown AnnotateConfig section {section!r} (known: {', '.join(sections)})")
        current = getattr(cfg, section)
        if current is None and isinstance(values, dict):  # e.g. masks switched off in the base
            current = sections[section].default_factory()
        if not dataclasses.is_dataclass(current) or values is None:
            changes[section] = values
            continue
        if not isinstance(values, dict):
            raise ValueError(f"overrides of {section!r} must be a dict, not {values!r}")
        known = {f.name for f in dataclasses.fields(current)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ValueError(f"unknown {section} setting(s) {', '.join(map(repr, unknown))} ({type(current).__name__})")
        values = {
            k: tuple(v) if isinstance(getattr(current, k), tuple) and isinstance(v, list) else v
            for k, v in values.items()
        }
        changes[section] = dataclasses.replace(current, **values)
    return dataclasses.replace(cfg, **changes)


def roc_auc(scores, labels) -> float:
    """ROC AUC of ``scores`` separating True from False labels (Mann-Whitney; ties count half)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return NAN
    return float((rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -- one clip -----------------------------------------------------------------------------------------


def _source_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1()
    for pattern in _SHARED_SOURCES:
        for path in sorted(root.glob(pattern)):
            h.update(path.read_bytes())
    return h.hexdigest()


def _shared_key(cfg: AnnotateConfig, digest: str) -> str:
    doc = {
        "sampling": [cfg.fps, cfg.max_side, cfg.max_frames],
        "masks": asdict(cfg.masks) if cfg.masks is not None else None,
        "tracking": asdict(cfg.tracking),
        "code": digest,
    }
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resize_masks(masks: np.ndarray, h: int, w: int) -> np.ndarray:
    if masks.shape[1:] == (h, w):
        return masks
    return np.stack([cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 for m in masks])


def _shared_inputs(sampled, cfg: AnnotateConfig, gt_masks: np.ndarray, path: Path) -> dict:
    """Masks, tracklets, their seconds and the mask components' IoU: from ``path`` or computed there."""
    if path.exists():
        with open(path, "rb") as f:
            shared = pickle.load(f)
        shared["cached"] = True
    else:
        frames = sampled.frames
        shared = {"masks_s": 0.0, "masks": None, "component_iou": {}}
        if cfg.masks is not None:
            t0 = time.perf_counter()
            dyn = compute_dynamic_masks(frames, cfg.masks)
            shared["masks_s"] = time.perf_counter() - t0
            shared["masks"] = dyn.union
            shared["component_iou"] = {k: v["iou"] for k, v in score_masks(dyn, gt_masks).items() if k != "union"}
        t0 = time.perf_counter()
        shared["tracklets"] = track_grid(frames, cfg.tracking)
        shared["tracking_s"] = time.perf_counter() - t0
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(shared, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)  # atomic: a reader never sees half a file
        shared["cached"] = False
    if shared["masks"] is not None:
        shared["masks"].setflags(write=False)  # shared by every variant: an in-place edit must fail loudly
    return shared


def _num(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return NAN
    return v


MOVING_SPEED = 0.2  # scene units (metres) per second: slower objects count as standing still


def _gamma_points(ann, gt) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Motion level of every tracked query point with a finite one, whether GT calls it dynamic
    (on an object), and whether that object stands still (slower than MOVING_SPEED around then, or
    of unknown speed: a suite rendered without ``object_centres``)."""
    if ann.tracklets is None:
        return None
    # run_sfm reports it in the result's extra; a tracker may one day set it on the tracklets
    gamma = getattr(ann.tracklets, "gamma", None)
    gamma = ann.poses.extra.get("track_gamma") if gamma is None else gamma
    if gamma is None:
        return None
    scores, labels, still = [], [], []
    for win, g in zip(ann.tracklets.windows, gamma):
        g = np.asarray(g, np.float64)
        pts = np.asarray(win.points[win.query_offset], np.float64)
        ok = np.isfinite(g) & np.isfinite(pts).all(axis=1)
        if not ok.any():
            continue
        frame = int(ann.source_indices[win.query_frame])
        ids = gt.object_at(frame, pts[ok], ann.width, ann.height)
        speeds = gt.object_speeds(frame)
        scores.append(g[ok])
        labels.append(ids > 0)
        # left out of the moving AUC: objects standing still, and those whose speed is unknown
        still.append(np.array([i > 0 and not speeds.get(int(i), 0.0) >= MOVING_SPEED for i in ids], bool))
    if not scores:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(still)


def _moving_auc(scores, labels, still) -> float:
    """AUC of points on objects that move against the static scene (still objects left out)."""
    return roc_auc(scores[~still], labels[~still])


def _hypotheses(poses, gt, gt_fx: float) -> list[dict]:
    """The SfM hypotheses the pipeline reports, each with its ATE and focal errors."""
    hyps = poses.extra.get("hypotheses") or []
    results = poses.extra.get("hypothesis_results") or []
    out = []
    for i, h in enumerate(hyps):
        row = {
            "name": str(h.get("name", i)),
            "chosen": bool(h.get("chosen", False)),
            "registered_ratio": _num(h.get("registered_ratio")),
            "reprojection_error": _num(h.get("reprojection_error")),
            "self_consistency": _num(h.get("self_consistency")),
            "initial_focal_err": _num(h.get("initial_focal")) / gt_fx - 1,
            "final_focal_err": NAN,
            "ate": NAN,
        }
        if i < len(results) and results[i] is not None:
            res = results[i]
            row["final_focal_err"] = res.intrinsics.fx / gt_fx - 1 if np.any(res.registered) else NAN
            row["ate"] = float(evaluate_trajectory(res, gt.poses)["ate"])
        out.append(row)
    return out


def _score(ann, gt, gt_masks: np.ndarray, shared: dict, annotate_s: float) -> tuple[dict, tuple | None]:
    poses = ann.poses
    traj = evaluate_trajectory(poses, gt.poses)
    gt_fx = gt.poses.intrinsics.scaled(ann.width, ann.height).fx  # GT intrinsics are at the rendered size
    registered = bool(np.any(poses.registered))
    rec = {
        "status": ann.status,
        "message": ann.message,
        "registered_ratio": poses.registered_ratio,
        **{k: float(traj[k]) for k in ("ate", "rpe_t", "rpe_r")},
        "success": traj["success"],
        "filled": traj["filled"],
        # a clip that registered nothing keeps the initial guess: no refined focal to score
        "focal_err": poses.intrinsics.fx / gt_fx - 1 if registered else NAN,
        "reprojection_error": _num(poses.reprojection_error),
        "self_consistency": _num(poses.extra.get("self_consistency")),
        "mask_iou": mask_scores(ann.masks, gt_masks)["iou"] if ann.masks is not None else NAN,
        **{f"iou_{k}": v for k, v in shared["component_iou"].items()},
        "masks_s": shared["masks_s"],
        "tracking_s": shared["tracking_s"],
        "sfm_s": _num(ann.timings.get("sfm_s")),
        "annotate_s": annotate_s,
        "total_s": shared["masks_s"] + shared["tracking_s"] + _num(ann.timings.get("total_s")),
        "cached": shared["cached"],
    }
    components = getattr(ann, "mask_components", None) or {}
    for name, m in components.items():
        rec[f"iou_{name}"] = mask_scores(_resize_masks(np.asarray(m, bool), *gt_masks.shape[1:]), gt_masks)["iou"]
    hyps = _hypotheses(poses, gt, gt_fx)
    if hyps:
        rec["hypotheses"] = hyps
        ates = np.array([h["ate"] for h in hyps])
        reproj = np.array([h["reprojection_error"] for h in hyps])
        chosen = [h["ate"] for h in hyps if h["chosen"]]
        rec["ate_chosen"] = chosen[0] if chosen else NAN
        rec["ate_lowest_reprojection"] = float(ates[np.nanargmin(reproj)]) if np.isfinite(reproj).any() else NAN
        rec["ate_oracle"] = float(np.nanmin(ates)) if np.isfinite(ates).any() else NAN
    gamma = _gamma_points(ann, gt)
    rec["gamma_auc"] = roc_auc(*gamma[:2]) if gamma is not None else NAN
    rec["gamma_auc_moving"] = _moving_auc(*gamma) if gamma is not None else NAN
    rec["still_object_points"] = int(gamma[2].sum()) if gamma is not None else 0
    return rec, gamma


def run_clip(clip: dict, suite_dir: str, configs: dict[str, AnnotateConfig], cache_dir: str) -> list[dict]:
    """Records of every variant on one clip (a variant that raises gets status ``error``).

    Each record's ``_gamma`` holds the (scores, labels, still) of its tracked points, for the pooled AUC."""
    suite, name = Path(suite_dir), clip["name"]
    gt = load_ground_truth(str(suite / clip["gt_dir"]))
    digest = _source_digest()
    decoded, shared_by_key, records = {}, {}, []
    for variant, cfg in configs.items():
        rec = {"clip": name, "variant": variant}
        try:
            sampling = (cfg.fps, cfg.max_side, cfg.max_frames)
            if sampling not in decoded:
                t0 = time.perf_counter()
                sampled = sample_frames(str(suite / clip["video"]), *sampling)
                gt_masks = _resize_masks(gt.masks(sampled.source_indices), *sampled.frames.shape[1:3])
                decoded[sampling] = (sampled, gt_masks, time.perf_counter() - t0)
            sampled, gt_masks, decode_s = decoded[sampling]
            key = _shared_key(cfg, digest)
            if key not in shared_by_key:
                shared_by_key[key] = _shared_inputs(sampled, cfg, gt_masks, Path(cache_dir) / name / f"{key}.pkl")
            shared = shared_by_key[key]
            t0 = time.perf_counter()
            # tracklets copied: a variant that annotates them (motion level) must not leak into the next
            ann = annotate_frames(sampled, cfg, masks=shared["masks"], tracklets=copy.deepcopy(shared["tracklets"]))
            scored, gamma = _score(ann, gt, gt_masks, shared, time.perf_counter() - t0)
            rec.update(scored, decode_s=decode_s, _gamma=gamma)
        except Exception as exc:  # one bad variant or clip must not end the study
            rec.update(status="error", message=f"{type(exc).__name__}: {exc}")
        records.append(rec)
    return records


def _error_records(clip: dict, configs: dict, exc: BaseException) -> list[dict]:
    message = f"{type(exc).__name__}: {exc}"
    return [{"clip": clip["name"], "variant": v, "status": "error", "message": message} for v in configs]


def _run_clip_safely(clip: dict, *args) -> list[dict]:
    try:
        return run_clip(clip, *args)
    except Exception as exc:  # unreadable ground truth: the clip fails, the study goes on
        return _error_records(clip, args[1], exc)


# -- the study ----------------------------------------------------------------------------------------


def ablate(
    suite_dir: str | Path,
    variants: dict[str, dict],
    out_dir: str | Path,
    clips: list[str] | None = None,
    limit: int | None = None,
    workers: int = 1,
    log=print,
    study: str | None = None,
) -> AblationResult:
    """Run every variant on every chosen clip; tables, ``OUT/report.md`` and ``OUT/results.json``.

    ``study`` only names the variants in the report's reproduce command (``--study`` instead of
    one ``--variant`` per variant). ``workers`` clips run at a time in child processes."""
    if not variants:
        raise ValueError("no variant to run")
    configs = {name: variant_config(v) for name, v in variants.items()}  # an unknown key fails before any work
    suite, out = Path(suite_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = select_clips(suite, clips, limit)
    load_start, t_start = os.getloadavg(), time.perf_counter()
    args = (str(suite), configs, str(out / "cache"))
    per_clip: list[list[dict]] = [[] for _ in entries]

    def finished(i: int, records: list[dict], count: int) -> None:
        per_clip[i] = records
        log(_progress_line(count, len(entries), entries[i]["name"], records))

    if workers <= 1:
        for i, entry in enumerate(entries):
            finished(i, _run_clip_safely(entry, *args), i + 1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver")) as pool:
            futures = {pool.submit(_run_clip_safely, entry, *args): i for i, entry in enumerate(entries)}
            for count, fut in enumerate(as_completed(futures), 1):
                i = futures[fut]
                try:
                    records = fut.result()
                except Exception as exc:  # a worker that died (memory)
                    records = _error_records(entries[i], configs, exc)
                finished(i, records, count)
    wall = time.perf_counter() - t_start
    records = [r for recs in per_clip for r in recs]
    gammas: dict[str, list] = {}
    for r in records:
        gamma = r.pop("_gamma", None)
        if gamma is not None:
            gammas.setdefault(r["variant"], []).append(gamma)
    pooled = {
        v: roc_auc(np.concatenate([g[0] for g in gs]), np.concatenate([g[1] for g in gs])) for v, gs in gammas.items()
    }
    # each clip's gamma over its median: the pooled AUC without the clips' different noise scales
    pooled_relative = {
        v: roc_auc(np.concatenate([relative_motion_level(g[0]) for g in gs]), np.concatenate([g[1] for g in gs]))
        for v, gs in gammas.items()
    }
    pooled_moving = {
        v: _moving_auc(*(np.concatenate([g[i] for g in gs]) for i in range(3))) for v, gs in gammas.items()
    }
    tables = ablation_tables(records, list(configs), pooled, pooled_relative, pooled_moving)
    command = _command(suite, out, variants, study, clips, limit, workers)
    load_end = os.getloadavg()
    loads = f"load {' '.join(f'{x:.2f}' for x in load_start)} (1, 5, 15 min) at the start, " + " ".join(
        f"{x:.2f}" for x in load_end
    )
    lines = [
        f"# Annotation ablation: {study or 'ad-hoc variants'}",
        "",
        f"{machine_line()}; {loads} at the end; {workers} clip(s) at a time; wall time {wall:.0f} s "
        f"for {len(entries)} clip(s) x {len(configs)} variant(s).",
        "",
        f"Reproduce: `{command}`",
        "",
        "Variants (overrides of AnnotateConfig sections):",
        "",
        *[f"- `{name}`: `{json.dumps(v)}`" for name, v in variants.items()],
        "",
        "Masks and tracklets are computed once per clip and (sampling, masks, tracking) configuration and "
        "cached in OUT/cache (delete it to time them again): their seconds are those of the run that computed "
        "them. ATE / RPE with the failure handling of the pose benchmark (failed clips filled). Focal error: "
        "final focal / ground truth - 1. rho: Spearman over clips of a self-check against ATE. gamma AUC: ROC "
        "AUC of the tracked points' motion level for ground-truth dynamic against static points, pooled over "
        "clips; gamma/median AUC: the same with each clip's gamma divided by its median; gamma AUC moving: points "
        f"on objects moving faster than {MOVING_SPEED} m/s (the generator's object centres) against the static "
        "scene, points on objects standing still or of unknown speed (a suite without object centres) left out.",
    ]
    for title, rows in tables:
        lines += ["", f"## {title}", "", markdown_table(rows) if rows else "_No rows._"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    doc = {
        "study": study,
        "variants": variants,
        "suite": str(suite),
        "command": command,
        "machine": machine_line(),
        "load_start": list(load_start),
        "load_end": list(load_end),
        "workers": workers,
        "wall_s": wall,
        "gamma_auc_pooled": pooled,
        "gamma_auc_pooled_relative": pooled_relative,
        "gamma_auc_pooled_moving": pooled_moving,
        "records": records,
    }
    (out / "results.json").write_text(json.dumps(_plain(doc), indent=1) + "\n")
    return AblationResult(tables, report, records)


def _command(suite, out, variants, study, clips, limit, workers) -> str:
    import shlex

    parts = ["dynpose", "bench", "annotation", "--suite", str(suite), "--out", str(out)]
    if study:
        parts += ["--study", study]
    else:
        for name, v in variants.items():
            parts += ["--variant", f"{name}={json.dumps(v)}"]
    if clips:
        parts += ["--clips", *clips]
    if limit:
        parts += ["--limit", str(limit)]
    if workers > 1:
        parts += ["--workers", str(workers)]
    return shlex.join(parts)


def _plain(obj):
    """JSON-ready: NaN as null, numpy scalars as Python ones."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _progress_line(count: int, total: int, name: str, records: list[dict]) -> str:
    ok = [r for r in records if r.get("status") != "error"]
    head = f"[{count}/{total}] {name}"
    if ok:
        s = ok[0]
        head += (
            " (masks and tracks cached)"
            if s["cached"]
            else f" (masks {s['masks_s']:.1f} s, tracks {s['tracking_s']:.1f} s)"
        )
    parts = [
        f"{r['variant']} error: {r['message']}"
        if r.get("status") == "error"
        else f"{r['variant']} {r['annotate_s']:.1f} s ATE {r['ate']:.4g} reg {100 * r['registered_ratio']:.0f}%"
        for r in records
    ]
    return f"{head}: " + "; ".join(parts)


# -- tables -------------------------------------------------------------------------------------------


def _col(records: list[dict], key: str) -> np.ndarray:
    return np.array([_num(r.get(key)) for r in records], np.float64)


def _stat(values, fn) -> float:
    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    return float(fn(a)) if len(a) else NAN


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return NAN
    with warnings.catch_warnings():  # constant input: NaN, said once in the table
        warnings.simplefilter("ignore")
        return float(spearmanr(x[keep], y[keep])[0])


def _drop_empty(rows: list[dict], optional: tuple[str, ...]) -> list[dict]:
    """Rows without the optional columns no row has a value for (fields the pipeline does not report)."""
    empty = [c for c in optional if all(not np.isfinite(_num(r.get(c))) for r in rows)]
    return [{k: v for k, v in r.items() if k not in empty} for r in rows]


def ablation_tables(
    records: list[dict],
    variants: list[str],
    pooled_auc: dict[str, float],
    pooled_relative: dict[str, float] | None = None,
    pooled_moving: dict[str, float] | None = None,
) -> list:
    """(title, rows) tables: per variant, per clip x variant and, where reported, per SfM hypothesis."""
    ok = [r for r in records if r.get("status") != "error"]
    by = {v: [r for r in ok if r["variant"] == v] for v in variants}
    first = {r["clip"]: _num(r.get("ate")) for r in by[variants[0]]}
    summary = []
    for v in variants:
        recs = by[v]
        ate, reg = _col(recs, "ate"), 100 * _col(recs, "registered_ratio")
        ratio = np.array([_num(r["ate"]) / first.get(r["clip"], NAN) for r in recs])
        ratio[~np.isfinite(ratio)] = NAN  # a zero or missing ATE of the first variant
        focal = np.abs(_col(recs, "focal_err"))
        summary.append(
            {
                "variant": v,
                "clips": len(recs),
                "errors": sum(r["variant"] == v for r in records) - len(recs),
                "reg % mean": _stat(reg, np.mean),
                "reg % min": _stat(reg, np.min),
                ">=95% reg": int(np.sum(reg >= 95)),
                "ATE mean": _stat(ate, np.mean),
                "ATE median": _stat(ate, np.median),
                "RPE-t mean": _stat(_col(recs, "rpe_t"), np.mean),
                "RPE-r mean": _stat(_col(recs, "rpe_r"), np.mean),
                "worst ATE / first": _stat(ratio, np.max),
                ">1.5x worse": int(np.sum(ratio > 1.5)),
                "abs focal err median": _stat(focal, np.median),
                "abs focal err worst": _stat(focal, np.max),
                "rho(SC, ATE)": _spearman(_col(recs, "self_consistency"), ate),
                "rho(reproj, ATE)": _spearman(_col(recs, "reprojection_error"), ate),
                "gamma AUC": pooled_auc.get(v, NAN),
                "gamma/median AUC": (pooled_relative or {}).get(v, NAN),
                "gamma AUC moving": (pooled_moving or {}).get(v, NAN),
                "mask IoU": _stat(_col(recs, "mask_iou"), np.mean),
                **{f"{s} s": _stat(_col(recs, f"{s}_s"), np.mean) for s in ("masks", "tracking", "sfm", "total")},
            }
        )
    per_clip = [
        {
            "clip": r["clip"],
            "variant": r["variant"],
            "status": r.get("status"),
            "reg %": 100 * _num(r.get("registered_ratio")),
            "ATE": _num(r.get("ate")),
            "focal err": _num(r.get("focal_err")),
            "SC": _num(r.get("self_consistency")),
            "reproj px": _num(r.get("reprojection_error")),
            "gamma AUC": _num(r.get("gamma_auc")),
            "gamma AUC moving": _num(r.get("gamma_auc_moving")),
            "mask IoU": _num(r.get("mask_iou")),
            "sfm s": _num(r.get("sfm_s")),
        }
        for r in records
    ]
    optional = ("rho(SC, ATE)", "SC", "gamma AUC", "gamma/median AUC", "gamma AUC moving")
    tables = [
        ("Per variant (means over clips unless said)", _drop_empty(summary, optional)),
        ("Per clip and variant", _drop_empty(per_clip, optional)),
    ]
    components = sorted({k for r in ok for k in r if k.startswith("iou_")})
    if components:
        tables.append(
            (
                "Mask components: mean IoU against ground truth",
                [{"variant": v, **{c[4:]: _stat(_col(by[v], c), np.mean) for c in components}} for v in variants],
            )
        )
    tables += _hypothesis_tables(by)
    return tables


def _hypothesis_tables(by: dict[str, list[dict]]) -> list:
    per_name, rules = [], []
    for v, recs in by.items():
        recs = [r for r in recs if r.get("hypotheses")]
        if not recs:
            continue
        groups: dict[str, list[dict]] = {}
        for r in recs:
            for h in r["hypotheses"]:
                groups.setdefault(h["name"], []).append(h)
        for name, hs in groups.items():
            init, final = np.abs(_col(hs, "initial_focal_err")), np.abs(_col(hs, "final_focal_err"))
            ate = _col(hs, "ate")
            per_name.append(
                {
                    "variant": v,
                    "hypothesis": name,
                    "clips": len(hs),
                    "chosen": sum(h["chosen"] for h in hs),
                    "init abs focal err median": _stat(init, np.median),
                    "init abs focal err worst": _stat(init, np.max),
                    "final abs focal err median": _stat(final, np.median),
                    "final abs focal err worst": _stat(final, np.max),
                    "ATE mean": _stat(ate, np.mean),
                    "ATE median": _stat(ate, np.median),
                }
            )
        oracle = _col(recs, "ate_oracle")
        for rule in ("chosen", "lowest_reprojection", "oracle"):
            ate = _col(recs, f"ate_{rule}")
            rules.append(
                {
                    "variant": v,
                    "rule": rule.replace("_", " "),
                    "clips": len(recs),
                    "ATE mean": _stat(ate, np.mean),
                    "ATE median": _stat(ate, np.median),
                    "picks the oracle": int(np.sum(np.isclose(ate, oracle))),
                }
            )
    if not per_name:
        return []
    return [
        ("SfM hypotheses: focal error of each initialisation and ATE", per_name),
        ("SfM hypotheses: selection rules (ATE of the hypothesis each rule picks)", rules),
    ]
