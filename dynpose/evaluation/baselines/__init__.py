"""Pose-estimation methods behind one small protocol, looked up by name.

A method is a module (or any object) with ``NAME: str`` and
``run(sampled: SampledFrames, dynamic_masks: np.ndarray | None = None, **options) -> PoseResult``.
``dynamic_masks`` is (N, H, W) bool, True on dynamic pixels. ``run`` never raises for a
video it cannot handle: it returns ``registered`` all False and says why in ``extra["reason"]``.

Adding a method: write one module with ``NAME`` and ``run`` and add one line to ``METHODS``
(or call :func:`register` at run time). Modules are imported on first use, so listing a method
costs nothing until it runs.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.video import SampledFrames


class PoseMethod(Protocol):
    NAME: str

    def run(self, sampled: SampledFrames, dynamic_masks: np.ndarray | None = None, **options: Any) -> PoseResult: ...


METHODS: dict[str, str | Any] = {
    "identity": "dynpose.evaluation.baselines.identity",
    "colmap": "dynpose.evaluation.baselines.colmap",
    "colmap_mask": "dynpose.evaluation.baselines.colmap_mask",
    "tracksto4d": "dynpose.evaluation.baselines.tracksto4d",
    "tracksto4d+ba": "dynpose.evaluation.baselines.tracksto4d_ba",
}


def register(name: str, method: str | Any) -> None:
    """Register a method: a dotted module path or an object with ``NAME`` and ``run``."""
    METHODS[name] = method


def available_methods() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> PoseMethod:
    """The method registered under ``name`` (imported on first use)."""
    if name not in METHODS:
        raise KeyError(f"unknown pose method {name!r}; available: {', '.join(available_methods())}")
    method = METHODS[name]
    if isinstance(method, str):
        method = METHODS[name] = importlib.import_module(method)
    if not callable(getattr(method, "run", None)):
        raise TypeError(f"pose method {name!r} has no run()")
    return method


def failed_result(sampled: SampledFrames, reason: str, **extra: Any) -> PoseResult:
    """The result of a method that registered nothing (:meth:`PoseResult.unregistered` on ``sampled``)."""
    height, width = int(sampled.frames.shape[1]), int(sampled.frames.shape[2])
    return PoseResult.unregistered(sampled.timestamps, width, height, reason, **extra)  # COLMAP's prior focal
