"""Every named outcome a video can have, in the order a video meets them. SQL sees plain strings."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    ok = "ok"
    # the catalog probe and decoding (dynpose.domain.video.VideoError)
    empty = "empty"
    missing = "missing"
    unreadable = "unreadable"
    no_video_stream = "no_video_stream"
    undecodable = "undecodable"
    too_short = "too_short"
    too_large = "too_large"
    # annotation (dynpose.domain.annotate.decisions)
    too_few_frames = "too_few_frames"
    no_texture = "no_texture"
    static_camera = "static_camera"
    sfm_failed = "sfm_failed"
    low_registration = "low_registration"
    # the filtering cascade (dynpose.domain.filters.cascade): not failures of the video's data
    not_reached = "not_reached"  # a filter the cascade never ran: an earlier stage rejected the video
    filtered_out = "filtered_out"  # an annotation product skipped the video: the cascade did not keep it
    # the VLM (dynpose.domain.vlm_client): the model's or the service's fault, asked again next run
    skipped = "skipped"  # no VLM endpoint configured: the cascade decides without it
    vlm_error = "vlm_error"  # the service failed after the client's retries (HTTP error, timeout)
    vlm_bad_answer = "vlm_bad_answer"  # the answer was not the schema's object
    # a crash of one video's work (native fault, killed for memory): recorded, the shard goes on
    failed = "failed"
