"""Pipeline settings: one dataclass section per product, loaded from an optional YAML file.

Each product's config hash is the hash of its own section and of the sections it ``uses`` (the
annotation checks), so editing one section makes exactly the products it shapes (and their
downstream) stale. Unknown keys are errors, so a typo never goes unnoticed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dynpose.domain.annotate.decisions import AnnotationChecks
from dynpose.domain.annotate.masks import MaskConfig
from dynpose.domain.annotate.quality import TierSettings
from dynpose.domain.annotate.sfm import SfmConfig
from dynpose.domain.annotate.tracking import TrackConfig
from dynpose.domain.catalog import CatalogSettings, FrameSettings
from dynpose.domain.filters.base import FilterFrameSettings
from dynpose.domain.filters.cascade import CascadeSettings
from dynpose.domain.filters.content import ContentConfig
from dynpose.domain.filters.distortion import DistortionConfig
from dynpose.domain.filters.flow import FlowConfig
from dynpose.domain.filters.focal import FocalConfig
from dynpose.domain.filters.masking import MaskingFilterConfig
from dynpose.domain.filters.tracking import TrackingFilterConfig
from dynpose.domain.filters.vlm import VlmConfig
from dynpose.domain.vlm_client import VlmEndpoint
from dynpose.graph.checks import CheckSettings
from dynpose.storage.ingest import IngestSettings


@dataclass
class AnnotationSettings:
    videos: str = "kept"  # kept: annotate only what the filter cascade kept; all: every ok video (the pose benchmark)

    def __post_init__(self):
        if self.videos not in ("kept", "all"):
            raise ValueError(f"annotation.videos must be 'kept' or 'all', got {self.videos!r}")


@dataclass
class BaselineSettings:
    # names in dynpose.evaluation.baselines.METHODS
    methods: tuple[str, ...] = ("colmap", "colmap_mask", "tracksto4d", "tracksto4d+ba", "identity")
    only_with_ground_truth: bool = True  # baselines are for benchmarking: skip videos without ground truth
    options: dict = field(default_factory=dict)  # per method keyword options, e.g. {colmap: {max_num_features: 4096}}


@dataclass
class BenchmarkSettings:
    fill_seed: int = 0  # seed of the random translation that fills failed trajectories


@dataclass
class Settings:
    ingest: IngestSettings = field(default_factory=IngestSettings)
    clip_catalog: CatalogSettings = field(default_factory=CatalogSettings)
    # the VLM endpoint (base_url defaults to $OPENAI_BASE_URL; no model: no VLM), for filter_vlm and the masks
    vlm: VlmEndpoint = field(default_factory=VlmEndpoint)
    filter_frames: FilterFrameSettings = field(default_factory=FilterFrameSettings)
    filter_content: ContentConfig = field(default_factory=ContentConfig)
    filter_flow: FlowConfig = field(default_factory=FlowConfig)
    filter_focal: FocalConfig = field(default_factory=FocalConfig)
    filter_distortion: DistortionConfig = field(default_factory=DistortionConfig)
    filter_tracking: TrackingFilterConfig = field(default_factory=TrackingFilterConfig)
    filter_masking: MaskingFilterConfig = field(default_factory=MaskingFilterConfig)
    filter_vlm: VlmConfig = field(default_factory=VlmConfig)  # what the VLM filter asks
    filter_decisions: CascadeSettings = field(default_factory=CascadeSettings)
    annotation: AnnotationSettings = field(default_factory=AnnotationSettings)
    sampled_frames: FrameSettings = field(default_factory=FrameSettings)
    dynamic_masks: MaskConfig = field(default_factory=MaskConfig)
    tracklets: TrackConfig = field(default_factory=TrackConfig)
    camera_poses: SfmConfig = field(default_factory=SfmConfig)
    # the thresholds that name a video's status (too_few_frames ... low_registration) and gate its tier
    annotation_checks: AnnotationChecks = field(default_factory=AnnotationChecks)
    pose_quality: TierSettings = field(default_factory=TierSettings)
    baseline_poses: BaselineSettings = field(default_factory=BaselineSettings)
    pose_benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    reprojection_benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    asset_checks: CheckSettings = field(default_factory=CheckSettings)  # data checks after each materialization

    def section(self, product: str):
        return getattr(self, product, None)


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"settings '{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown settings key(s) in '{where}': {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if dataclasses.is_dataclass(cls) else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}" if where else name)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_settings(path: str | Path | None = None) -> Settings:
    if path is None:
        return Settings()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return _build(Settings, data, "")


def settings_to_dict(settings: Settings) -> dict:
    return dataclasses.asdict(settings)
