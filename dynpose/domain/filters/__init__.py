"""The filtering cascade's specialist filters: frames in, a score in [0, 1] and named measurements out.

Every filter module has a settings dataclass, a ``COLUMNS`` list of its sub-scores and raw
measurements, and ``run(frames: FilterFrames, cfg, video: dict) -> FilterResult`` (see ``base``).
"""

import importlib


def filter_module(name: str):
    """The module of one filter by its short name (content, flow, focal, ...)."""
    return importlib.import_module(f"dynpose.domain.filters.{name}")
