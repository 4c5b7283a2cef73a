"""The export job: a quality-filtered subset of the lake to a folder or s3:// prefix (docs/export.md)."""

import dagster as dg

from dynpose.export import DEFAULT_TIERS, FORMATS, Selection, export
from dynpose.resources import LakeResource


class ExportConfig(dg.Config):
    """What ``dynpose export`` takes: the destination, the selection and the format."""

    dest: str
    format: str = "dynpose"  # dynpose | parquet | webdataset
    min_filter_score: float | None = None
    tiers: list[str] | None = list(DEFAULT_TIERS)  # None: every tier, failed included
    min_registered: float | None = 0.8
    where: str | None = None  # a boolean SQL expression over the candidate columns
    with_frames: bool = False  # webdataset: the sampled frames as JPEGs


@dg.op
def export_subset(context: dg.OpExecutionContext, config: ExportConfig, lake: LakeResource) -> dict:
    if config.format not in FORMATS:
        raise dg.Failure(f"unknown format {config.format!r}: use {', '.join(FORMATS)}")
    selection = Selection(
        min_filter_score=config.min_filter_score,
        tiers=tuple(config.tiers) if config.tiers is not None else None,
        min_registered=config.min_registered,
        where=config.where,
    )
    report = export(
        lake.lake(),
        config.dest,
        selection,
        fmt=config.format,
        with_frames=config.with_frames,
        frames=lake.settings().sampled_frames,
        progress=lambda done, total, _what: context.log.debug(f"exported {done}/{total}"),
    )
    context.log.info(report.summary())
    context.add_output_metadata(
        {
            "manifest": dg.MetadataValue.path(report.manifest),
            "videos": report.videos,
            "files written": len(report.written),
            "videos/s": report.videos_per_s,
        }
    )
    return {"manifest": report.manifest, "videos": report.videos, "written": report.written}


@dg.job(description="Export a quality-filtered subset (dynpose, parquet or webdataset) with a manifest.")
def export_job():
    export_subset()
