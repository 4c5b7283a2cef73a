"""A bounded local cache of decoded frames, so the filters decode a video once and share it.

Six filter products read the same 6 fps frames of a video in six steps (and, on Ray, on any
node): each step looks here first. Entries are compressed ``.npz`` files written atomically
(temporary name + rename), keyed by video id and the decode parameters; when the folder grows past
its bound, the least recently used entries go. A missing or damaged entry is a miss, never an error.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path

import numpy as np


def default_folder() -> Path:
    return Path(os.environ.get("DYNPOSE_CACHE", Path.home() / ".cache" / "dynpose")) / "frames"


class FrameCache:
    def __init__(self, folder: str | Path | None = None, max_bytes: int = 2 * 1024**3):
        self.folder = Path(folder) if folder else default_folder()
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(key)
        try:
            with np.load(path) as data:
                out = {k: data[k] for k in data.files}
            os.utime(path)  # recently used
            return out
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if self.max_bytes <= 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{uuid.uuid4().hex[:8]}.tmp.npz"
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, self._path(key))
        except OSError:  # a full disk is a cache miss next time, not a failed video
            tmp.unlink(missing_ok=True)
            return
        self._evict()

    def _evict(self) -> None:
        entries = []
        for p in self.folder.glob("*.npz"):
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
