"""Clip generation: a :class:`ClipSpec` in, a :class:`RenderedClip` (frames + ground truth) out."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from dynpose.domain.camera import Intrinsics
from dynpose.domain.synth import camera_paths as cp
from dynpose.domain.synth import effects as fx
from dynpose.domain.synth.gt import sample_correspondences
from dynpose.domain.synth.lighting import bake
from dynpose.domain.synth.objects import Follower
from dynpose.domain.synth.populate import coverage, long_lens_shot, populate, propose_object
from dynpose.domain.synth.render import CameraModel, Renderer
from dynpose.domain.synth.scene import LAYOUTS
from dynpose.domain.synth.variants import LOW_RES_SIZES, label

DEFAULT_OBJECTS = {"room": (1, 3), "street": (2, 5), "plaza": (2, 6)}


@dataclass
class ClipSpec:
    """Every option of one generated clip. Unset (None) values are drawn from ``seed``."""

    seed: int = 0
    layout: str = "room"  # room | street | plaza
    trajectory: str = "handheld_walk"  # see camera_paths.TRAJECTORIES
    variant: str = "none"  # see variants.VARIANTS
    width: int = 854
    height: int = 480
    fps: float = 12.0
    seconds: float = 4.0
    scene_seed: int | None = None  # None: same as seed; suites share scenes between clips
    hfov_deg: float | None = None
    n_objects: int | None = None
    max_coverage: float = 0.6  # upper bound of the per-frame moving-object coverage
    near_object: bool = False  # place one object close to the camera (large coverage)
    near_objects: int = 0  # how many objects pass close to the camera (max with near_object)
    shutter: float = 1 / 60  # exposure time in seconds, for motion blur (0: off)
    noise: float = 1.0  # sensor noise scale (0: off)
    exposure_drift: float = 0.08  # amplitude of slow exposure changes on top of auto exposure
    shake: float = 1.0  # handheld shake scale
    crf: int = 20  # H.264 quality of the written mp4
    preset: str = "medium"  # x264 speed preset of the written mp4
    texture_scale: float | None = None  # texture resolution; None: width / 854
    corr_per_pair: int = 48
    corr_max_dt: float = 2.5
    # Frame drops (a sparse photo capture, a fast pan): the video keeps its fps and frame count, but
    # after every drop_spacing written frames the scene jumps by frame_drops (min, max) nominal frames.
    frame_drops: tuple[int, int] | None = None  # None: consecutive frames
    drop_spacing: tuple[int, int] = (4, 12)  # written frames between two drops
    params: dict = field(default_factory=dict)  # variant parameters (zoom, alpha, ...), filled in

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream])


@dataclass
class RenderedClip:
    spec: ClipSpec
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    depth: np.ndarray  # (N, H, W) float32 z-depth in metres, 0 where no surface (sky)
    object_ids: np.ndarray  # (N, H, W) uint16, 0 = static
    poses_w2c: np.ndarray  # (N, 3, 4) world-to-camera, OpenCV axes
    intrinsics: np.ndarray  # (N, 4) fx, fy, cx, cy per frame (pixels, pixel-centre convention)
    timestamps: np.ndarray  # (N,) seconds
    width: int
    height: int
    xi: float = 0.0  # unified camera model parameter (0: pinhole)
    prim_ids: np.ndarray | None = None  # (N, H, W) int16 primitive index, for correspondences
    meta: dict = field(default_factory=dict)
    correspondences: dict | None = None
    world: dict | None = field(default=None, repr=False)  # scene, objects, camera_path (not written)

    def intrinsics_at(self, i: int = 0) -> Intrinsics:
        fx, fy, cx, cy = self.intrinsics[i]
        return Intrinsics(float(fx), float(fy), float(cx), float(cy), self.width, self.height)

    def camera_model(self, i: int) -> CameraModel:
        fx, fy, cx, cy = self.intrinsics[i]
        return CameraModel(float(fx), float(fy), float(cx), float(cy), self.width, self.height, self.xi)

    def __len__(self) -> int:
        return len(self.frames)


_SCENES: dict = {}


def get_scene(layout: str, scene_seed: int, tq: float):
    """Build (or reuse) a baked static scene; the last two are cached for suites that share them."""
    key = (layout, scene_seed, round(tq, 3))
    if key not in _SCENES:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")
        rng = np.random.default_rng([scene_seed, 1000 + sorted(LAYOUTS).index(layout)])
        scene = LAYOUTS[layout](rng, tq)
        indoor = layout == "room"
        bake(
            scene.static,
            scene.lights,
            rng,
            tpm=5.0 if indoor else 2.5,
            ao_rays=10 if tq > 0.6 else 6,
            ao_dist=1.0 if indoor else 2.5,
        )
        while len(_SCENES) >= 2:
            _SCENES.pop(next(iter(_SCENES)))
        _SCENES[key] = scene
    return _SCENES[key]


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _zoom_fn(rng, seconds):
    """Focal scale over time: one or two smooth zooms in or out, 2x-3.5x."""
    z = rng.uniform(2.0, 3.5)
    a, b = sorted(rng.uniform(0.05, 0.95, 2) * seconds)
    b = max(b, a + 0.4 * seconds) if a + 0.4 * seconds < seconds else b
    zoom_in = rng.random() < 0.6
    lo, hi = (1.0, z) if zoom_in else (z, 1.0)
    return (lambda t: float(lo + (hi - lo) * _smoothstep((t - a) / max(b - a, 1e-3)))), {
        "zoom_from": lo,
        "zoom_to": hi,
        "t0": a,
        "t1": b,
    }


def _scene_times(spec: ClipSpec, n_frames: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Scene time of each written frame and the drops [(k, gap)]: the scene jumps by gap / fps
    between written frames k and k + 1 (gap - 1 nominal frames dropped), by 1 / fps elsewhere."""
    steps = np.ones(n_frames - 1, np.int64)
    drops = []
    if spec.frame_drops is not None:
        (glo, ghi), (slo, shi) = spec.frame_drops, spec.drop_spacing
        if not (1 <= glo <= ghi and 1 <= slo <= shi):
            raise ValueError(f"bad frame_drops {spec.frame_drops} or drop_spacing {spec.drop_spacing}")
        rng = spec.rng(9)  # its own stream: every other draw stays as without drops
        k = int(rng.integers(slo, shi + 1)) - 1
        while k < n_frames - 1:
            steps[k] = int(rng.integers(glo, ghi + 1))
            drops.append((k, int(steps[k])))
            k += int(rng.integers(slo, shi + 1))
    nominal = np.concatenate([[0], np.cumsum(steps)])  # 0, 1, ..., n - 1 without drops
    return nominal / spec.fps, drops


def _path_and_objects(spec: ClipSpec, scene, cam: CameraModel, hfov: float, tq: float, vrng, path_rng, orng, T: float):
    """The camera path and the moving objects placed to cross its view (variants adjust both), over
    scene times 0..T."""
    var = spec.variant
    traj = "tripod" if var in ("tripod", "long_focal") else spec.trajectory
    path = cp.make_path(traj, path_rng, scene, T, spec.shake)
    if var == "shot_change":
        n_cuts = spec.params.setdefault("n_cuts", int(vrng.integers(1, 3)))
        cuts = sorted(vrng.uniform(0.25, 0.8, n_cuts) * T)
        if n_cuts == 2 and cuts[1] - cuts[0] < 0.2 * T:
            cuts = [cuts[0], min(cuts[0] + 0.25 * T, 0.9 * T)]
        for k, tc in enumerate(cuts):
            other = cp.make_path(cp.TRAJECTORIES[int(vrng.integers(5))], spec.rng(20 + k), scene, T, spec.shake)
            path = cp.cut_path(path, other, tc)
        spec.params["t_cuts"] = [float(c) for c in cuts]
    if var == "zoom":
        fn, info = _zoom_fn(vrng, T)
        path.focal_scale = fn
        spec.params.update(info)
    lo, hi = DEFAULT_OBJECTS[spec.layout]
    n_obj = spec.n_objects if spec.n_objects is not None else int(orng.integers(lo, hi + 1))
    if var == "static_scene":
        n_obj = 0
    objects = []
    if var == "long_focal":  # a subject far away, followed by the long lens
        shot = long_lens_shot(vrng, scene, T, (4.0, 7.0) if spec.layout == "room" else (10.0, 25.0), spec.shake)
        if shot is not None:
            path, subj = shot
            objects.append(subj)
        n_obj = max(0, n_obj - 1)
    n_near = min(n_obj, max(spec.near_objects, int(spec.near_object)))
    near_objs = []
    for _ in range(n_near):  # objects passing close to the camera: large coverage
        for _ in range(10):
            kind = "person" if spec.layout != "street" or orng.random() < 0.6 else "car"
            near = propose_object(
                kind,
                len(objects) + len(near_objs) + 1,
                orng,
                scene,
                path,
                T,
                hfov,
                tq,
                dist_range=(1.3, 2.2) if kind == "person" else (2.6, 4.0),
            )
            if near is not None:
                near_objs.append(near)
                break
    n_obj -= n_near
    more, _ = populate(
        orng,
        scene,
        path,
        T,
        n_obj,
        cam,
        tq,
        max_coverage=spec.max_coverage,
        focal_scale=path.focal_scale,
        min_mean=0.01 if var == "none" else 0.0,
    )
    objects += more
    if near_objs:  # the far objects were checked by populate; now the whole set, dropping near ones if needed
        ts = np.linspace(0, T, max(6, int(T * 3)))
        while (
            near_objs
            and coverage(scene, path, objects + near_objs, cam, ts, focal_scale=path.focal_scale).max()
            > spec.max_coverage
        ):
            near_objs.pop()
        objects += near_objs
    for k, o in enumerate(objects):
        o.obj_id = k + 1
    return path, objects


def render_clip(spec: ClipSpec) -> RenderedClip:
    """Render a clip and its ground truth (deterministic for a given spec)."""
    category, suitable, _ = label(spec.variant)
    if spec.variant == "side_by_side":
        return _side_by_side(spec)
    t_start = time.perf_counter()
    if spec.width % 2 or spec.height % 2:
        raise ValueError("width and height must be even (H.264 yuv420p)")
    spec = replace(spec, params=dict(spec.params))
    var = spec.variant
    vrng = spec.rng(7)
    W, H = spec.width, spec.height
    if var == "low_res":
        W, H = spec.params.get("size") or LOW_RES_SIZES[int(vrng.integers(len(LOW_RES_SIZES)))]
        spec.params["size"] = [W, H]
    tq = spec.texture_scale or float(np.clip(max(W, 320) / 854, 0.35, 1.2))
    scene_seed = spec.seed if spec.scene_seed is None else spec.scene_seed
    scene = get_scene(spec.layout, scene_seed, tq)
    crng = spec.rng(1)
    hfov = spec.hfov_deg or float(crng.uniform(55, 75))
    if var == "long_focal":
        hfov = spec.params.setdefault(
            "hfov_deg", float(vrng.uniform(3, 8) if spec.layout != "room" else vrng.uniform(8, 12))
        )
    f = W / 2 / math.tan(math.radians(hfov) / 2)
    xi = 0.0
    if var == "fisheye":
        xi = spec.params.setdefault("alpha", float(vrng.uniform(1.2, 2.2)))
        f = xi * H / 2 * spec.params.setdefault("circle_scale", float(vrng.uniform(1.0, 1.5)))
    cam = CameraModel(f, f, (W - 1) / 2, (H - 1) / 2, W, H, xi)
    n_frames = max(2, int(round(spec.seconds * spec.fps)))
    times, drops = _scene_times(spec, n_frames)  # scene times: where path, objects and blur are evaluated
    video_times = np.arange(n_frames) / spec.fps  # the mp4's timestamps, also those of the ground truth
    # The camera path and the objects must cover the last scene time, past `seconds` with drops.
    T = float(times[-1] + 1 / spec.fps) if drops else spec.seconds
    path, objects = _path_and_objects(spec, scene, cam, hfov, tq, vrng, spec.rng(2), spec.rng(3), T)
    redraws = 0
    # A dynamic clip needs moving objects. A path that sweeps most of a small room leaves no place
    # where they can cross the view without running into the camera: draw another path.
    while var == "none" and not objects and redraws < 5:
        redraws += 1
        path, objects = _path_and_objects(
            spec, scene, cam, hfov, tq, vrng, spec.rng(100 + redraws), spec.rng(200 + redraws), T
        )
    if var == "none" and not objects:
        raise RuntimeError(
            f"no moving object fits clip seed {spec.seed} ({spec.layout}, {spec.trajectory}) after {redraws} "
            "camera paths"
        )
    if redraws:
        spec.params["camera_path_redraws"] = redraws
    if var == "huge_object":
        d = float(vrng.uniform(0.9, 1.6))
        vf = 2 * math.atan(H / 2 / f)
        grow = 1.0
        for _ in range(6):
            hw = d * math.tan(math.radians(hfov) / 2) * vrng.uniform(1.05, 1.4) * grow
            hh = d * math.tan(vf / 2) * vrng.uniform(1.1, 1.4) * grow
            big = Follower(len(objects) + 1, vrng, path, d, hw, hh, tpm=80 * tq)
            cov = coverage(scene, path, objects + [big], cam, np.linspace(0, T, 8))
            if np.percentile(cov, 25) > 0.82:
                break
            grow *= 1.2
        objects.append(big)
    renderer = Renderer(scene)
    sensor = fx.Sensor(spec.rng(4), H, W, noise=0.0 if var == "cartoon" else spec.noise)
    drift = cp.SmoothNoise(spec.rng(5), 0.05, 0.4)
    overlay = fx.Overlay(vrng, H, W, T) if var == "overlay" else None
    aperture = float(vrng.uniform(0.02, 0.05)) if var == "long_focal" else 0.0
    frames = np.empty((n_frames, H, W, 3), np.uint8)
    depth = np.empty((n_frames, H, W), np.float32)
    oid = np.empty((n_frames, H, W), np.uint16)
    pid = np.empty((n_frames, H, W), np.int16)
    poses = np.empty((n_frames, 3, 4))
    intr = np.empty((n_frames, 4))
    cams = []
    exposure = None
    frng = spec.rng(6)
    half_shutter = spec.shutter / 2
    use_blur = spec.shutter > 0 and var != "cartoon"
    for k, t in enumerate(times):
        camk = cam.scaled_focal(path.focal_scale(t))
        dyn = [p for o in objects for p in o.prims(t)]
        blur = None
        if use_blur:
            blur = tuple(
                (cam.scaled_focal(path.focal_scale(tt)), path.c2w(tt), [p for o in objects for p in o.prims(tt)])
                for tt in (t - half_shutter, t + half_shutter)
            )
            if var == "shot_change" and any(
                (t - half_shutter) < c <= (t + half_shutter) for c in spec.params["t_cuts"]
            ):
                blur = None  # no smear across a cut
        fr = renderer.render(camk, path.c2w(t), dyn, blur=blur, flat=(var == "cartoon"))
        t_fx = time.perf_counter()
        lin = fr.linear
        if fr.motion is not None:
            lin = fx.motion_blur(lin, fr.motion)
        if aperture and objects:
            rot, c = path.c2w(t)
            focus = float((rot.T @ (objects[0].center(t) - c))[2])
            lin = fx.depth_of_field(lin, fr.depth, max(focus, 1.0), camk.fx, aperture)
        target = fx.auto_exposure(lin, valid=fr.prim != -2 if xi else None)
        exposure = target if exposure is None else exposure * (target / exposure) ** 0.3  # AE adapts with a lag
        gain = exposure * math.exp(spec.exposure_drift * drift(t))
        if var == "cartoon":
            img = fx.cartoon(fr, fr.albedo * 1.0, fr.shade, fr.prim, fr.depth)
        else:
            img = sensor.develop(lin, gain, k, frng)
        if overlay is not None:
            img = overlay.apply(img, t)
        renderer._tick("effects", t_fx)
        frames[k] = img
        depth[k] = fr.depth
        oid[k] = fr.obj
        pid[k] = fr.prim
        poses[k] = path.w2c(t)
        intr[k] = (camk.fx, camk.fy, camk.cx, camk.cy)
        cams.append(camk)
    elapsed = time.perf_counter() - t_start
    cov = (oid > 0).reshape(n_frames, -1).mean(1)
    crn = sample_correspondences(
        depth,
        pid,
        oid,
        poses,
        cams,
        times,
        spec.rng(8),
        max_dt=spec.corr_max_dt,
        per_pair=spec.corr_per_pair,
        fps=spec.fps,
    )  # pairs up to corr_max_dt apart in scene time: the camera's motion bounds the baseline
    if drops:  # the evaluator matches by the video's timestamps
        crn["t_i"], crn["t_j"] = video_times[crn["frame_i"]], video_times[crn["frame_j"]]
    depth[~np.isfinite(depth)] = 0.0
    meta = {
        "seed": spec.seed,
        "scene_seed": scene_seed,
        "layout": spec.layout,
        "trajectory": "tripod" if var == "tripod" else ("shot_change" if var == "shot_change" else spec.trajectory),
        "variant": var,
        "category": category,
        "suitable": suitable,
        "fps": spec.fps,
        "width": W,
        "height": H,
        "n_frames": n_frames,
        "seconds": float(n_frames / spec.fps),
        "hfov_deg": float(math.degrees(2 * math.atan(W / 2 / f))) if xi == 0 else None,
        "fisheye_alpha": xi if xi else None,
        "object_count": len(objects),
        "object_kinds": [o.kind for o in objects],
        "mask_coverage": {
            "mean": float(cov.mean()),
            "median": float(np.median(cov)),
            "p90": float(np.percentile(cov, 90)),
            "max": float(cov.max()),
            "min": float(cov.min()),
        },
        "n_correspondences": int(len(crn["frame_i"])),
        "render_seconds": round(elapsed, 3),
        "render_stage_seconds_per_frame": {k: round(v / n_frames, 4) for k, v in renderer.timings.items()},
        "params": {k: v for k, v in spec.params.items()},
        "camera_path": {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in path.params.items()},
        "spec": {k: v for k, v in asdict(spec).items() if k != "params"},
    }
    if spec.frame_drops is not None:
        meta.update(scene_times=times.tolist(), frame_drops=[list(d) for d in drops], scene_seconds=T)
    # each object's centre (world, m) at every frame: which objects move, and how fast (a person
    # standing still is in the masks' dynamic class but gives no motion cue)
    meta["object_centres"] = {str(o.obj_id): np.round([o.center(t) for t in times], 4).tolist() for o in objects}
    return RenderedClip(
        spec,
        frames,
        depth,
        oid,
        poses,
        intr,
        video_times,
        W,
        H,
        xi,
        pid,
        meta,
        crn,
        world={"scene": scene, "objects": objects, "camera_path": path},
    )


def _side_by_side(spec: ClipSpec) -> RenderedClip:
    """Two independent half-width clips side by side (or stacked); ground truth of the first."""
    vrng = spec.rng(7)
    stacked = spec.params.get("stacked", bool(vrng.random() < 0.3))
    W, H = spec.width - spec.width % 4, spec.height - spec.height % 4
    half = (W // 2, H) if not stacked else (W, H // 2)
    # Two different shots of the same place (another camera path, other moving objects): as
    # cheap as one scene, and still an obvious composite.
    tq = spec.texture_scale or float(np.clip(max(spec.width, 320) / 854, 0.35, 1.2))
    scene_seed = spec.seed if spec.scene_seed is None else spec.scene_seed
    a = replace(spec, variant="none", width=half[0], height=half[1], params={}, texture_scale=tq, scene_seed=scene_seed)
    b = replace(a, seed=spec.seed + 7919, trajectory=cp.TRAJECTORIES[int(vrng.integers(5))])
    ca, cb = render_clip(a), render_clip(b)
    n = min(len(ca), len(cb))
    axis = 2 if not stacked else 1
    frames = np.concatenate([ca.frames[:n], cb.frames[:n]], axis=axis)
    pad = lambda x: np.concatenate([x[:n], np.zeros_like(x[:n])], axis=axis)  # noqa: E731
    meta = dict(ca.meta)
    category, suitable, _ = label("side_by_side")
    meta.update(
        variant="side_by_side",
        category=category,
        suitable=suitable,
        width=frames.shape[2],
        height=frames.shape[1],
        params={"stacked": stacked, "second": {"seed": b.seed, "trajectory": b.trajectory}},
        ground_truth="left (or top) half only; the other half has depth 0 and no correspondences",
    )
    meta["spec"] = {k: v for k, v in asdict(spec).items() if k != "params"}
    return RenderedClip(
        spec,
        frames,
        pad(ca.depth),
        pad(ca.object_ids),
        ca.poses_w2c[:n],
        ca.intrinsics[:n],
        ca.timestamps[:n],
        frames.shape[2],
        frames.shape[1],
        0.0,
        None,
        meta,
        ca.correspondences,
    )
