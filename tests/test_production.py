"""The production instance: Dagster storage on PostgreSQL, ``dagster-daemon`` running the sensors,
runs through the multiprocess executor with the per-video work on Ray (docs/production.md).

A PostgreSQL server, a local Ray and the daemon are started here on 127.0.0.1 and stopped after,
also when the test fails. A video dropped into the watched source folder must become a shard and
every per-shard product of it through the daemon alone: nothing here materializes directly.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dynpose.graph.products import shard_names
from dynpose.storage.lake import Lake
from dynpose.storage.ledger import Ledger

from .conftest import _free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLIP = "000_room_handheld_walk"

# Postgres storage for runs, events and schedules: what docs/production.md tells a deployment to write.
DAGSTER_YAML = """\
storage:
  postgres:
    postgres_url:
      env: DAGSTER_POSTGRES_URL
telemetry:
  enabled: false
"""

# Fast settings: annotate the one video whatever the filters say, identity as the only baseline.
SETTINGS = "annotation:\n  videos: all\nbaseline_poses:\n  methods: [identity]\n"


def _postgres_bin() -> Path | None:
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return versions[-1].parent if versions else None


class Postgres:
    """A throwaway PostgreSQL cluster in a temporary folder, on 127.0.0.1 only, trust auth."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="dynpose-pg-"))
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        # PostgreSQL refuses to run as root: the server runs as an unprivileged user.
        self.user = None
        if os.geteuid() == 0:
            self.user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
            if self.user is None:
                pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL")
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        """libpq's form, for psycopg2 itself."""
        return f"postgresql://dynpose@127.0.0.1:{self.port}/dagster"

    @property
    def sqlalchemy_url(self) -> str:
        """For dagster-postgres: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is not
        installed; the driver is named."""
        return f"postgresql+psycopg2://dynpose@127.0.0.1:{self.port}/dagster"

    def _popen(self, cmd, **kw) -> subprocess.Popen:
        if self.user:
            kw.update(user=self.user, group=pwd.getpwnam(self.user).pw_gid)
        return subprocess.Popen(cmd, cwd=self.dir, start_new_session=True, **kw)

    def start(self) -> None:
        data = self.dir / "data"
        log = open(self.dir / "postgres.log", "wb")
        init = self._popen(
            [self.bindir / "initdb", "-D", data, "-U", "dynpose", "--auth=trust", "--no-locale", "-E", "UTF8"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if init.wait(timeout=120) != 0:
            raise RuntimeError(f"initdb failed: {(self.dir / 'postgres.log').read_text()[-2000:]}")
        self.proc = self._popen(
            [
                self.bindir / "postgres",
                "-D",
                data,
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.dir}",
                "-c",
                "fsync=off",  # a test cluster: durability is not the point
                "-c",
                "synchronous_commit=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        import psycopg2

        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.dir / 'postgres.log').read_text()[-2000:]}")
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="dynpose", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("create database dagster")
        conn.close()

    def query(self, sql: str) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(self.url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def postgres():
    pytest.importorskip("dagster_postgres")
    bindir = _postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (postgres, initdb) not found")
    server = Postgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray on 127.0.0.1 (no dashboard) that every step process of the runs connects to."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    info = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield info.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group (its code server, run workers and step processes), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def test_instance_on_postgres(tmp_path, monkeypatch, postgres):
    """What `dynpose materialize` / `dynpose ui` open with the production dagster.yaml: Postgres storage."""
    from dynpose.graph.orchestrate import instance_for

    home = tmp_path / "dagster_prod"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres.sqlalchemy_url)
    instance = instance_for(Lake(str(tmp_path / "lake")))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML and instance.get_runs() == []


@pytest.mark.slow  # about 4.5 min; test_instance_on_postgres keeps the storage wiring in the default run
# Eighteen step processes, each importing the pipeline and connecting to Ray, plus the daemon, its
# code server and three CLI calls: about 3.5 minutes on an idle 2-core machine.
@pytest.mark.timeout(1800)
def test_daemon_on_postgres_turns_a_dropped_video_into_every_shard_product(tmp_path, monkeypatch, postgres, local_ray):
    import dagster as dg

    from dynpose.domain.synth import generate_suite
    from dynpose.graph.orchestrate import instance_for

    suite = tmp_path / "suite"
    generate_suite(suite, "tiny", seed=0)
    source, lake_url, home = tmp_path / "source", str(tmp_path / "lake"), tmp_path / "dagster_prod"
    source.mkdir()
    home.mkdir()
    # The ground truth of the clip to come is already there; the folder holds no video yet.
    shutil.copytree(suite / CLIP, source / CLIP)
    manifest = [c for c in json.loads((suite / "manifest.json").read_text()) if c["name"] == CLIP]
    (source / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": postgres.sqlalchemy_url,
        "DYNPOSE_LAKE": lake_url,
        "DYNPOSE_SOURCE": str(source),
        "DYNPOSE_SETTINGS": str(tmp_path / "settings.yaml"),
        "DYNPOSE_EXECUTOR": "ray",
        "DYNPOSE_RAY_ADDRESS": local_ray,
        "DYNPOSE_SENSOR_INTERVAL_S": "3",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    # What `dynpose materialize` / `dynpose ui` open: the user's DAGSTER_HOME, its dagster.yaml kept.
    instance = instance_for(Lake(lake_url))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML
    assert instance.get_runs() == []

    # Sensors and the schedule default to STOPPED: turned on as an operator would, through the CLI.
    workspace = str(REPO / "workspace.yaml")
    starts = [
        subprocess.Popen([BIN / "dagster", kind, "start", name, "-w", workspace], stdout=subprocess.PIPE, text=True)
        for kind, name in (("sensor", "source_sensor"), ("sensor", "shard_sensor"), ("schedule", "ingest_job_schedule"))
    ]
    for p in starts:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out
    running = {s.instigator_name for s in instance.all_instigator_state() if s.is_running}
    assert running == {"source_sensor", "shard_sensor", "ingest_job_schedule"}

    daemon_log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", workspace],
        cwd=tmp_path,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # A new video appears in the watched folder (renamed in whole, as an upload tool would).
        shutil.copy(suite / f"{CLIP}.mp4", tmp_path / f"{CLIP}.mp4")
        os.rename(tmp_path / f"{CLIP}.mp4", source / f"{CLIP}.mp4")
        run = _wait_for_shard_run(instance, daemon, tmp_path / "daemon.log", timeout=1500)
        heartbeats = instance.get_daemon_heartbeats()
    finally:
        _stop_group(daemon)
        daemon_log.close()
    log_tail = (tmp_path / "daemon.log").read_text(errors="replace")[-4000:]
    assert run.status == dg.DagsterRunStatus.SUCCESS, log_tail
    assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"} <= set(heartbeats), heartbeats

    # The source sensor launched the ingest, the shard sensor the shard's run, both through the daemon.
    # (The hourly schedule may add an ingest run of its own if the test spans a full hour.)
    (ingest_run,) = instance.get_runs(
        dg.RunsFilter(job_name="ingest_job", tags={"dagster/sensor_name": "source_sensor"})
    )
    assert ingest_run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/sensor_name"] == "shard_sensor"
    assert run.tags["dagster/partition"] == "s00000" and run.tags["dagster/run_key"] == "shard-s00000"
    assert instance.get_dynamic_partitions("video_shards") == ["s00000"]

    # Every per-shard product is in the lake, computed by that run (its ledger records carry its id).
    lake = Lake(lake_url)
    products = shard_names()
    records = Ledger(lake).run_records(run.run_id, products, "s00000")
    assert sorted(r.product for r in records) == sorted(products)
    assert {r.action for r in records} == {"computed"}, [(r.product, r.action, r.reason) for r in records]
    for name in products:
        assert lake.read_table(name, "s00000").num_rows >= 1, name
    (video,) = lake.read_table("clip_catalog", "s00000").to_pylist()
    assert video["status"] == "ok" and video["source_uri"].endswith(f"{CLIP}.mp4")
    assert video["ground_truth_uri"] and video["ground_truth_uri"].endswith(CLIP)
    assert {r["method"] for r in lake.read_table("baseline_poses", "s00000").to_pylist()} == {"identity"}
    assert lake.read_table("camera_poses", "s00000").to_pylist()[0]["video_id"] == video["video_id"]

    # Dagster saw each one materialize, one step process per product (the multiprocess executor).
    materialized = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert {e.dagster_event.asset_key.to_user_string() for e in materialized} == set(products)
    assert {e.dagster_event.partition for e in materialized} == {"s00000"}
    workers = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED)
    assert {e.step_key for e in workers} == set(products)
    engine = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    assert any("multiprocess executor" in (e.message or "") for e in engine)

    # Per-video work went to the Ray cluster: step processes of the run connected to it as drivers.
    import ray._private.state

    drivers = {j["DriverPid"] for j in ray._private.state.jobs()} - {os.getpid()}
    assert drivers, "no process of the runs connected to Ray"
    step_pids = {e.dagster_event.pid for e in workers}  # recorded by the step process itself
    assert drivers <= step_pids, (drivers, step_pids)

    # All of it is in PostgreSQL, none in a SQLite file under DAGSTER_HOME.
    rows = postgres.query(
        f"select pipeline_name, status from runs where run_id in ('{ingest_run.run_id}', '{run.run_id}')"
    )
    assert sorted(rows) == [("ingest_job", "SUCCESS"), ("process_shard", "SUCCESS")]
    (count,) = postgres.query(
        "select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
        f" and run_id = '{run.run_id}'"
    )[0]
    assert count == len(products)
    assert not list(home.rglob("*.db"))


def _wait_for_shard_run(instance, daemon: subprocess.Popen, log: Path, timeout: float):
    """The shard's process_shard run, once it has finished (or the test fails with the daemon's log)."""
    import dagster as dg

    deadline = time.time() + timeout
    while time.time() < deadline:
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited ({daemon.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        for run in instance.get_runs(dg.RunsFilter(job_name="process_shard")):
            if run.is_finished:
                return run
        failed = instance.get_runs(dg.RunsFilter(job_name="ingest_job", statuses=[dg.DagsterRunStatus.FAILURE]))
        if failed:
            pytest.fail(f"the ingest run failed:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(2)
    pytest.fail(f"no finished process_shard run after {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")
