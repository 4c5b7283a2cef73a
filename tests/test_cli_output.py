"""What the command line prints: native logs to a file, not the terminal; CSV quoting; the demo's per-video table."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dynpose import cli
from dynpose.logs import native_logs_to_file


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return fds


def _noise() -> None:
    """Native-style writes (straight to the descriptors, and from a child), then Python-level ones."""
    os.write(2, b"native noise\n")
    os.write(1, b"native stdout noise\n")
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child noise\\n')"], check=True)
    print("our summary")
    print("our warning", file=sys.stderr)
    from tqdm import tqdm

    for _ in tqdm(range(2), desc="our bar"):
        pass


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_native_writes_go_to_the_log_file_and_python_output_to_the_terminal(tmp_path, capfd):
    before = _open_fds()
    with native_logs_to_file(tmp_path / "_logs", "demo", verbose=False) as path:
        _noise()
    out, err = capfd.readouterr()
    log = path.read_text()
    assert "native noise" in log and "native stdout noise" in log and "child noise" in log
    assert "noise" not in out + err
    assert "our summary" in out and "our warning" in err and "our bar" in err
    assert f"native library log: {path}" in err
    assert path.parent == tmp_path / "_logs" and path.name.endswith("-demo.log")
    assert _open_fds() == before  # descriptors restored exactly, nothing left open
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_a_forkserver_started_inside_writes_to_the_log_and_is_stopped_after(tmp_path):
    # In a fresh interpreter: in this one a graph test has usually started the isolation forkserver
    # already, and one started outside the redirect keeps writing to the terminal.
    script = textwrap.dedent(
        f"""
        import multiprocessing as mp, os
        from multiprocessing import forkserver
        from dynpose.logs import native_logs_to_file

        if __name__ == "__main__":
            with native_logs_to_file({str(tmp_path / "_logs")!r}, "materialize", verbose=False) as path:
                proc = mp.get_context("forkserver").Process(target=os.write, args=(2, b"forked noise\\n"))
                proc.start()
                proc.join()
                assert proc.exitcode == 0
            # the next forkserver starts with this process's own fd 2
            print(path, forkserver._forkserver._forkserver_pid is None)
        """
    )
    (tmp_path / "forkserver_child.py").write_text(script)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "forkserver_child.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    path, stopped = done.stdout.split()
    assert "forked noise" in Path(path).read_text() and "forked noise" not in done.stderr
    assert stopped == "True"


def test_verbose_leaves_the_descriptors_alone(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("DYNPOSE_VERBOSE", raising=False)
    with native_logs_to_file(tmp_path / "_logs", "demo", verbose=True) as path:
        assert path is None and os.environ["DYNPOSE_VERBOSE"] == "1"
        _noise()
    assert "DYNPOSE_VERBOSE" not in os.environ
    out, err = capfd.readouterr()
    assert "native noise" in err and "child noise" in err and "native stdout noise" in out and "our summary" in out
    assert not (tmp_path / "_logs").exists()
    monkeypatch.setenv("DYNPOSE_VERBOSE", "1")  # the environment variable does the same
    with native_logs_to_file(tmp_path / "_logs", "demo") as path:
        os.write(2, b"native noise\n")
    assert path is None and "native noise" in capfd.readouterr().err


def test_an_empty_log_is_removed_and_not_announced(tmp_path, capfd):
    with native_logs_to_file(tmp_path / "_logs", "ingest", verbose=False) as path:
        print("only ours")
    out, err = capfd.readouterr()
    assert out == "only ours\n" and "native library log" not in err and not path.exists()


def test_on_a_real_terminal_python_output_uses_the_kept_descriptor(tmp_path):
    # sys.stderr really is descriptor 2 here (no pytest capture): it must be rerouted, not silenced.
    script = textwrap.dedent(f"""
        import os, sys, warnings
        from dynpose.logs import native_logs_to_file
        with native_logs_to_file({str(tmp_path)!r}, "synth", verbose=False):
            os.write(2, b"native noise\\n")
            os.write(1, b"native stdout noise\\n")
            warnings.warn("our warning")
            print("our summary")
        sys.stderr.write("after\\n")
        os.write(2, b"native after\\n")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "noise" not in done.stdout and "our summary" in done.stdout
    assert "our warning" in done.stderr and "native noise" not in done.stderr
    assert done.stderr.rstrip().endswith("after\nnative after")
    log = next(tmp_path.glob("*-synth.log")).read_text()
    assert "native noise" in log and "native stdout noise" in log and "our" not in log


def test_cli_wraps_work_commands_and_verbose_is_a_global_flag(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_ingest(args):
        os.write(2, b"native noise\n")
        print("summary line")
        seen["verbose"] = os.environ.get("DYNPOSE_VERBOSE")
        return 0

    monkeypatch.setattr(cli, "cmd_ingest", fake_ingest)  # build_parser looks it up at each call
    monkeypatch.delenv("DYNPOSE_VERBOSE", raising=False)
    lake = tmp_path / "lake"
    assert cli.main(["--lake", str(lake), "ingest", "somewhere"]) == 0
    assert "summary line" in capsys.readouterr().out  # capsys still sees our output
    logs = list((lake / "_logs").glob("*-ingest.log"))
    assert len(logs) == 1 and logs[0].read_text() == "native noise\n" and seen["verbose"] is None
    assert cli.main(["--verbose", "--lake", str(lake), "ingest", "somewhere"]) == 0
    assert seen["verbose"] == "1" and len(list((lake / "_logs").glob("*.log"))) == 1


def test_sql_csv_quotes_only_where_needed(capsys):
    table = pa.table({"name": ["plain", "with, comma", 'say "hi"', None], "n": [1, 2, None, 4]})
    buf = io.StringIO()
    cli._write_csv(table, buf)
    text = buf.getvalue()
    assert text.splitlines() == ["name,n", "plain,1", '"with, comma",2', '"say ""hi""",', ",4"]
    assert list(csv.reader(io.StringIO(text)))[2] == ["with, comma", "2"]


def _write_product(lake: Path, product: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    path = lake / "tables" / product / "shard=s00000" / "data.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def test_demo_video_rows_from_a_lake_with_some_products_missing(tmp_path):
    from dynpose.storage.lake import Lake

    lake = tmp_path / "lake"
    _write_product(
        lake,
        "clip_catalog",
        [
            {"video_id": "a", "source_uri": "/v/000_room.mp4", "status": "ok", "ground_truth_uri": "/v/000_room"},
            {"video_id": "b", "source_uri": "s3://bucket/videos/bikes.mp4", "status": "ok", "ground_truth_uri": None},
            {"video_id": "c", "source_uri": "/v/empty.mp4", "status": "empty", "ground_truth_uri": None},
        ],
        pa.schema(
            [
                ("video_id", pa.string()),
                ("source_uri", pa.string()),
                ("status", pa.string()),
                ("ground_truth_uri", pa.string()),
            ]
        ),
    )
    _write_product(
        lake,
        "camera_poses",
        [
            {"video_id": "a", "method": "ours", "status": "ok", "n_frames": 4, "registered": [True, True, False, True]},
            {
                "video_id": "b",
                "method": "ours",
                "status": "sfm_failed",
                "n_frames": 3,
                "registered": [False, False, False],
            },
        ],
    )
    _write_product(lake, "pose_quality", [{"video_id": "a", "tier": "good"}, {"video_id": "b", "tier": "failed"}])
    # No pose_benchmark yet: the ATE column stays empty rather than failing the summary.
    rows = cli.demo_video_rows(Lake(str(lake)))
    assert rows == [
        {
            "video": "000_room.mp4",
            "filters": None,
            "status": "ok",
            "registered frames": "3/4",
            "tier": "good",
            "ATE": None,
        },
        {
            "video": "bikes.mp4",
            "filters": None,
            "status": "sfm_failed",
            "registered frames": "0/3",
            "tier": "failed",
            "ATE": None,
        },
        {
            "video": "empty.mp4",
            "filters": None,
            "status": "empty",
            "registered frames": None,
            "tier": None,
            "ATE": None,
        },
    ]
    _write_product(
        lake,
        "pose_benchmark",
        [
            {"video_id": "a", "method": "ours", "ate": 0.0123},
            {"video_id": "a", "method": "colmap", "ate": 9.0},
            {"video_id": "b", "method": "ours", "ate": 5.0},  # no ground truth in the catalog: not shown
        ],
    )
    _write_product(
        lake,
        "filter_decisions",
        [
            {"video_id": "a", "kept": True, "stage_left": None},
            {"video_id": "b", "kept": False, "stage_left": "content+flow+focal"},
        ],
    )
    rows = cli.demo_video_rows(Lake(str(lake)))
    assert [r["ATE"] for r in rows] == [0.0123, None, None]
    assert [r["filters"] for r in rows] == ["kept", "rejected at content+flow+focal", None]


def test_video_rows_before_poses_exist():
    rows = cli.video_rows(
        [{"video_id": "a", "source_uri": "/x/a.mp4", "status": "ok", "ground_truth_uri": None}], [], [], []
    )
    assert rows == [
        {
            "video": "a.mp4",
            "filters": None,
            "status": "no poses yet",
            "registered frames": None,
            "tier": None,
            "ATE": None,
        }
    ]
