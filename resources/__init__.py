"""Configurable Dagster resources: the lake (with the pipeline settings) and the executor.

Unset fields fall back to the environment when the resource is used, not when this module is
imported, so a code location started before ``DYNPOSE_LAKE`` was set still sees it, and the UI
shows the configured value rather than whatever the importing process had.
"""

from __future__ import annotations

import os
from functools import lru_cache

import dagster as dg

from dynpose.graph.executors import Executor, make_executor
from dynpose.graph.settings import Settings, load_settings
from dynpose.storage.lake import Lake


@lru_cache(maxsize=8)
def _lake(url: str) -> Lake:
    return Lake(url)


class LakeResource(dg.ConfigurableResource):
    """Where products live (local path or s3://bucket/prefix) and the settings file that shapes them."""

    url: str | None = None  # default: env DYNPOSE_LAKE, else ./lake
    settings_file: str | None = None  # default: env DYNPOSE_SETTINGS, else the built-in settings

    def lake(self) -> Lake:
        return _lake(self.url or os.environ.get("DYNPOSE_LAKE") or "./lake")

    def settings(self) -> Settings:
        return load_settings(self.settings_file or os.environ.get("DYNPOSE_SETTINGS") or None)


class ExecutorResource(dg.ConfigurableResource):
    """How per-video work inside a shard runs: 'in_process' (default; ``workers`` videos at a time)
    or 'ray' (local or an address)."""

    kind: str | None = None  # default: env DYNPOSE_EXECUTOR, else in_process
    address: str | None = None  # default: env DYNPOSE_RAY_ADDRESS, else a local Ray on 127.0.0.1
    num_cpus: int | None = None
    workers: int | None = None  # default: env DYNPOSE_WORKERS, else 1

    def executor(self) -> Executor:
        return make_executor(
            self.kind or os.environ.get("DYNPOSE_EXECUTOR") or "in_process",
            self.address or os.environ.get("DYNPOSE_RAY_ADDRESS") or None,
            self.num_cpus,
            self.workers or int(os.environ.get("DYNPOSE_WORKERS") or 1),
        )


def default_resources() -> dict:
    return {"lake": LakeResource(), "executor": ExecutorResource()}
