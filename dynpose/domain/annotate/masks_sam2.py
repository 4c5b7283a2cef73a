"""SAM2 video-predictor propagation (the paper's back end), loaded from local files only.

Needs the optional ``sam2`` 1.1.0 package (installed without torchvision, see docs/masks.md), a
checkpoint (``.pt`` with a ``"model"`` state dict, e.g. ``sam2.1_hiera_large.pt``) and a model
config: a yaml path, or a config name shipped inside the package such as
``configs/sam2.1/sam2.1_hiera_l.yaml``. Nothing is downloaded.

Each detection window gets its own inference state (the window's frames written as JPEG files, the
video predictor's public input format); each connected part of the detected mask is one object,
prompted with its mask on the window's first frame and propagated forward through the window.
"""

from __future__ import annotations

import importlib.util
import inspect
import tempfile
from pathlib import Path

import cv2
import numpy as np

# The same post-processing switches sam2.build_sam.build_sam2_video_predictor applies.
_VIDEO_OVERRIDES = [
    "model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "model.binarize_mask_from_pts_for_mem_enc=true",
    "model.fill_hole_area=8",
]


class Sam2Unavailable(RuntimeError):
    """SAM2 cannot run: the package, the checkpoint or the config is missing."""


def _sam2_dir() -> Path:
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise Sam2Unavailable(
            "the sam2 package is not installed: pip install --no-deps sam2==1.1.0 (see docs/masks.md)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _import_sam2() -> None:
    """Import sam2 under Hydra 1.4, whose ``version_base='1.2'`` (used by sam2/__init__) is refused.

    sam2 only initialises Hydra when nobody has, so initialise it first with the current version
    base; configs are then read with OmegaConf directly, not through Hydra's global state.
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        initialize_config_dir(config_dir=str(_sam2_dir()))
    import sam2  # noqa: F401


def resolve_config(config: str | None) -> Path:
    """A yaml path as given, or a config name looked up inside the installed sam2 package."""
    if not config:
        raise Sam2Unavailable(
            "MaskConfig.sam2_config is not set (a yaml path or e.g. 'configs/sam2.1/sam2.1_hiera_l.yaml')"
        )
    path = Path(config).expanduser()
    if path.is_file():
        return path
    for cand in (_sam2_dir() / config, _sam2_dir() / "configs" / "sam2.1" / config):
        if cand.is_file():
            return cand
    raise Sam2Unavailable(f"SAM2 config {config!r} not found as a file nor inside the sam2 package")


def _only_sam2() -> dict:
    """Hydra >= 1.4 lets the caller restrict config ``_target_``s: only sam2's own classes."""
    from hydra.utils import instantiate

    if "_execution_whitelist_" in inspect.signature(instantiate).parameters:
        return {"_execution_whitelist_": ["sam2.*"]}
    return {}


def build_video_predictor(checkpoint: str | None, config: str | None, device: str = "cpu"):
    """The SAM2 video predictor from local files; raises Sam2Unavailable with the reason."""
    if not checkpoint or not Path(checkpoint).expanduser().is_file():
        raise Sam2Unavailable(
            f"SAM2 checkpoint not found: {checkpoint!r} (set MaskConfig.sam2_checkpoint to a local .pt file)"
        )
    cfg_path = resolve_config(config)
    _import_sam2()
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sam2.build_sam import _load_checkpoint

    overrides = list(_VIDEO_OVERRIDES)
    if importlib.util.find_spec("sam2._C") is None:  # CPU install: no CUDA hole filling, skip it quietly
        overrides.append("model.fill_hole_area=0")
    cfg = OmegaConf.merge(OmegaConf.load(cfg_path), OmegaConf.from_dotlist(overrides))
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True, **_only_sam2())
    try:
        _load_checkpoint(model, str(Path(checkpoint).expanduser()))
    except (RuntimeError, KeyError) as exc:  # sam2 logs the key lists and raises a bare error
        raise Sam2Unavailable(f"checkpoint {checkpoint} does not match config {cfg_path.name}: {exc!r}") from exc
    return model.to(device).eval()


def _parts(mask: np.ndarray, max_objects: int, min_pixels: int) -> list[np.ndarray]:
    """Connected parts of ``mask``, largest first; the small ones merged into the last object."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    order = [k for k in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1 if stats[k, cv2.CC_STAT_AREA] >= min_pixels]
    parts = [labels == k for k in order[: max_objects - 1]]
    rest = np.isin(labels, order[max_objects - 1 :])
    return parts + ([rest] if rest.any() else [])


class Sam2Propagator:
    """``propagate(start, mask, length)`` with the SAM2 video predictor on the working frames."""

    def __init__(
        self, frames: np.ndarray, checkpoint: str | None, config: str | None, device: str = "cpu", max_objects: int = 8
    ):
        self.frames = frames  # (N, h, w, 3) uint8 RGB at the working size
        self.predictor = build_video_predictor(checkpoint, config, device)
        self.max_objects = max_objects

    def propagate(self, start: int, mask: np.ndarray, length: int, moving: np.ndarray | None = None) -> np.ndarray:
        import torch

        out = np.zeros((length,) + mask.shape, bool)
        parts = _parts(mask, self.max_objects, min_pixels=max(4, mask.size // 20000))
        if not parts:
            return out
        with tempfile.TemporaryDirectory(prefix="dynpose_sam2_") as tmp, torch.inference_mode():
            for k in range(length):
                cv2.imwrite(
                    str(Path(tmp) / f"{k}.jpg"), self.frames[start + k][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
            state = self.predictor.init_state(tmp, offload_video_to_cpu=True)
            for obj_id, part in enumerate(parts, start=1):
                self.predictor.add_new_mask(state, frame_idx=0, obj_id=obj_id, mask=torch.from_numpy(part))
            for k, _, logits in self.predictor.propagate_in_video(
                state, start_frame_idx=0, max_frame_num_to_track=length - 1
            ):
                out[k] = (logits[:, 0] > 0).any(dim=0).cpu().numpy()
        return out


class Sam2BoxSegmenter:
    """``segment(img, rects)``: SAM2 masks of pixel boxes on one RGB image (the VLM component).

    Uses the video predictor (the same loading as :class:`Sam2Propagator`) on a one-frame video:
    a box prompt on a frame with no memory is SAM's single-image segmentation, and it needs no
    torchvision, which the image predictor imports. Each box is one object.
    """

    def __init__(self, checkpoint: str | None, config: str | None, device: str = "cpu"):
        self.predictor = build_video_predictor(checkpoint, config, device)

    def __call__(self, img: np.ndarray, rects: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
        import torch

        if not rects:
            return []
        with tempfile.TemporaryDirectory(prefix="dynpose_sam2_") as tmp, torch.inference_mode():
            cv2.imwrite(str(Path(tmp) / "0.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            state = self.predictor.init_state(tmp, offload_video_to_cpu=True)
            for obj_id, rect in enumerate(rects, start=1):
                _, ids, logits = self.predictor.add_new_points_or_box(
                    state, frame_idx=0, obj_id=obj_id, box=np.asarray(rect, np.float32)
                )
        by_id = dict(zip(ids, (logits[:, 0] > 0).cpu().numpy()))  # every object's mask after the last prompt
        return [by_id[k] for k in range(1, len(rects) + 1)]
