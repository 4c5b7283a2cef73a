"""The VLM response cache in the lake: one JSON file per answer, ``_vlm_cache/<key[:2]>/<key>.json``.

The key is ``dynpose.domain.filters.vlm.cache_key`` (video id, sampled-frame hash, prompt
version, model). Writes go through :meth:`Lake.put_json`, so they are atomic: a killed run leaves
either a whole answer or none, and the next run asks only for what is missing.
"""

from __future__ import annotations

import posixpath

from dynpose.storage.lake import Lake

CACHE_DIR = "_vlm_cache"


class VlmCache:
    def __init__(self, lake: Lake):
        self.lake = lake

    def path(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad cache key {key!r}")
        return self.lake.path(CACHE_DIR, key[:2], f"{key}.json")

    def get(self, key: str) -> dict | None:
        try:
            value = self.lake.get_json(self.path(key))
        except (FileNotFoundError, ValueError):  # missing, or unreadable: ask again
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict) -> None:
        self.lake.put_json(self.path(key), value)

    def __len__(self) -> int:
        root = self.lake.path(CACHE_DIR)
        return sum(
            len([n for n in self.lake.listdir(posixpath.join(root, d)) if n.endswith(".json")])
            for d in self.lake.listdir(root)
        )
