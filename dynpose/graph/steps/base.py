"""What a product is: its code version, inputs and a pure compute function over one shard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from dynpose.graph.executors import Executor, InProcessExecutor
from dynpose.graph.settings import Settings
from dynpose.storage.ingest import Registry
from dynpose.storage.lake import Lake


@dataclass
class StepContext:
    lake: Lake
    shard: str
    settings: object  # this product's settings section
    all_settings: Settings = field(default_factory=Settings)  # for inputs' settings (e.g. frame sampling)
    executor: Executor = field(default_factory=InProcessExecutor)
    log: Callable[[str], None] = print
    progress: Callable[[int, int], None] | None = None

    def videos(self) -> list[dict]:
        return Registry(self.lake).videos(self.shard)

    def input(self, product: str) -> pa.Table | None:
        """The input product of this shard (of every shard, for an aggregate product)."""
        if self.shard == AGGREGATE:
            return self.lake.read_product(product)
        return self.lake.read_table(product, self.shard)

    def ok_videos(self) -> list[dict]:
        """Catalog rows of this shard's videos whose status is ok."""
        return [r for r in self.input("clip_catalog").to_pylist() if r["status"] == "ok"]

    def _decisions(self) -> dict[str, dict]:
        return {r["video_id"]: r for r in self.input("filter_decisions").to_pylist()}

    def annotated_videos(self) -> list[dict]:
        """The ok videos annotation works on: those the filter cascade kept (``annotation.videos:
        kept``, the default) or every one (``all``, as the pose benchmark runs)."""
        if self.all_settings.annotation.videos == "all":
            return self.ok_videos()
        decisions = self._decisions()
        return [v for v in self.ok_videos() if decisions.get(v["video_id"], {}).get("kept")]

    def filtered_out(self) -> list[tuple[str, str]]:
        """(video id, the cascade's reason) of the ok videos annotation skips."""
        if self.all_settings.annotation.videos == "all":
            return []
        decisions = self._decisions()
        return [
            (v["video_id"], decisions.get(v["video_id"], {}).get("reason") or "no filter decision")
            for v in self.ok_videos()
            if not decisions.get(v["video_id"], {}).get("kept")
        ]


@dataclass(frozen=True)
class Product:
    name: str
    code_version: str
    deps: tuple[str, ...]
    compute: Callable[[StepContext], pa.Table]
    description: str
    group: str
    aggregate: bool = False  # computed once over every shard (ledger shard key "all")
    # Extra asset metadata (tables, plots) read back from the lake: {name: MetadataValue-able}.
    metadata: Callable[[Lake, str], dict] | None = None
    # Settings sections besides its own that shape it (e.g. the annotation checks): hashed with its own.
    uses: tuple[str, ...] = ()
    schema: pa.Schema | None = None  # the stored table's columns: checked, and shown in the UI
    checks: tuple[str, ...] = ()  # data checks beyond the schema and failed share (dynpose.graph.checks.CHECKS)
    # Row statuses that are a service's fault, not the video's (a VLM timeout): a shard holding any
    # stays stale, so the next run asks again for those videos (the rest come from caches).
    retry_statuses: tuple[str, ...] = ()


AGGREGATE = "all"
