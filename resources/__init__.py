"""Configurable Dagster resources: the lake (with the pipeline settings) and the executor."""

from __future__ import annotations

import os
from functools import lru_cache

import dagster as dg

from dynpose.graph.executors import Executor, make_executor
from dynpose.storage.lake import Lake
from dynpose.graph.settings import Settings, load_settings


@lru_cache(maxsize=8)
def _lake(url: str) -> Lake:
    return Lake(url)


class LakeResource(dg.ConfigurableResource):
    """Where products live (local path or s3://bucket/prefix) and the settings file that shapes them."""

    url: str = os.environ.get("DYNPOSE_LAKE", "./lake")
    settings_file: str | None = os.environ.get("DYNPOSE_SETTINGS") or None

    def lake(self) -> Lake:
        return _lake(self.url)

    def settings(self) -> Settings:
        return load_settings(self.settings_file)


class ExecutorResource(dg.ConfigurableResource):
    """How per-video work inside a shard runs: 'in_process' (default; ``workers`` videos at a time)
    or 'ray' (local or an address)."""

    kind: str = os.environ.get("DYNPOSE_EXECUTOR", "in_process")
    address: str | None = os.environ.get("DYNPOSE_RAY_ADDRESS") or None
    num_cpus: int | None = None
    workers: int = int(os.environ.get("DYNPOSE_WORKERS", "1"))

    def executor(self) -> Executor:
        return make_executor(self.kind, self.address, self.num_cpus, self.workers)


def default_resources() -> dict:
    return {"lake": LakeResource(), "executor": ExecutorResource()}
