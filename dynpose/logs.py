"""Native log lines to a file, not the terminal (standard library only).

MediaPipe/TFLite, COLMAP (glog) and friends write straight to file descriptors 2 (and 1), also from
the child processes the pipeline forks. ``native_logs_to_file`` points those descriptors at a log
file for the duration of a command, while Python's own ``sys.stdout`` / ``sys.stderr`` (print,
tqdm, warnings, logging) keep writing to the terminal through kept duplicates of the original
descriptors. Everything is restored on exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

VERBOSE_ENV = "DYNPOSE_VERBOSE"

# Set while the redirect is on (restored after): where it makes libraries quieter without losing
# what the log file should hold. glog (COLMAP) logging to stderr lands in the file instead of /tmp.
QUIET_ENV = {"GLOG_logtostderr": "1"}


def is_verbose() -> bool:
    """True when native logs should reach the terminal (``--verbose`` or DYNPOSE_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_log_dir() -> Path:
    """Where logs go for commands without a local lake (an s3:// lake, annotate, synth, bench)."""
    return Path(os.environ.get("DYNPOSE_CACHE", Path.home() / ".cache" / "dynpose")) / "logs"


def log_file_path(folder: str | Path, command: str) -> Path:
    """``<folder>/<UTC timestamp>-<command>.log`` (a process id is added if that name is taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(folder) / f"{stamp}-{command}.log"
    return path.with_name(f"{stamp}-{command}-{os.getpid()}.log") if path.exists() else path


class _KeptStream:
    """Stands in for sys.stdout / sys.stderr: writes reach the kept terminal descriptor while the
    redirect is on and the original stream after it (a tqdm bar or logging handler that kept a
    reference never writes to a closed descriptor)."""

    def __init__(self, terminal, original):
        self._target = terminal
        self._original = original

    def write(self, s):
        return self._target.write(s)

    def flush(self):
        self._target.flush()

    def release(self) -> None:
        terminal, self._target = self._target, self._original
        with contextlib.suppress(Exception):
            terminal.flush()
        with contextlib.suppress(Exception):
            terminal.close()  # closefd=False: the descriptor is the caller's to close

    def __getattr__(self, name):  # encoding, isatty, fileno, buffer, ...
        return getattr(self._target, name)


def _writes_to_fd(stream, fd: int) -> bool:
    try:
        return stream is not None and stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # pytest's capsys, io.StringIO, closed: not the descriptor
        return False


def _forkserver_running() -> bool:
    try:
        from multiprocessing import forkserver

        return forkserver._forkserver._forkserver_pid is not None
    except Exception:
        return False


def _stop_forkserver() -> None:
    """Stop a forkserver started inside the redirect, so a later one does not inherit the log file."""
    try:
        from multiprocessing import forkserver

        forkserver._forkserver._stop()
    except Exception:
        pass


@contextlib.contextmanager
def native_logs_to_file(folder: str | Path, command: str, verbose: bool | None = None, fds: tuple[int, ...] = (1, 2)):
    """Send what is written to ``fds`` (native code, child processes started inside) to a log file.

    Yields the log file's path (None when verbose). Python-level output written through sys.stdout
    / sys.stderr still reaches the terminal, and so does a replaced stream that does not write to
    the descriptor itself (pytest's capsys, for instance). On exit, descriptors, streams and the
    environment are restored, an empty log file is removed and a non-empty one is announced on
    stderr in one line. A forkserver (``multiprocessing``) must start inside for its children's
    output to land in the file; one started inside is stopped on exit.
    """
    if verbose is None:
        verbose = is_verbose()
    saved_env = {k: os.environ.get(k) for k in (VERBOSE_ENV, *QUIET_ENV)}
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # executors and children see it (Ray streams worker logs then)
        try:
            yield None
        finally:
            _restore_env(saved_env)
        return

    path = log_file_path(folder, command)
    path.parent.mkdir(parents=True, exist_ok=True)
    streams = {1: "stdout", 2: "stderr"}
    for name in streams.values():
        with contextlib.suppress(Exception):
            getattr(sys, name).flush()
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    kept: dict[int, int] = {}
    replaced: dict[str, tuple[object, _KeptStream]] = {}
    forkserver_before = _forkserver_running()
    try:
        for fd in fds:
            try:
                kept[fd] = os.dup(fd)
            except OSError:  # not open: nothing to keep or redirect
                continue
            name = streams.get(fd)
            original = getattr(sys, name, None) if name else None
            if _writes_to_fd(original, fd):
                terminal = open(
                    kept[fd],
                    "w",
                    encoding=original.encoding,
                    errors=original.errors,
                    closefd=False,
                    buffering=-1,
                    newline=None,
                )
                terminal.reconfigure(
                    line_buffering=original.line_buffering,
                    write_through=fd == 2 or getattr(original, "write_through", False),
                )
                stand_in = _KeptStream(terminal, original)
                setattr(sys, name, stand_in)
                replaced[name] = (original, stand_in)
        for k, v in QUIET_ENV.items():
            os.environ.setdefault(k, v)
        os.environ.pop(VERBOSE_ENV, None)
        for fd in kept:
            os.dup2(log_fd, fd)
        yield path
    finally:
        for name in streams.values():
            with contextlib.suppress(Exception):
                getattr(sys, name).flush()
        if not forkserver_before and _forkserver_running():
            _stop_forkserver()
        for fd, dup in kept.items():
            os.dup2(dup, fd)
        for name, (original, stand_in) in replaced.items():
            if getattr(sys, name) is stand_in:
                setattr(sys, name, original)
            stand_in.release()
        for dup in kept.values():
            os.close(dup)
        os.close(log_fd)
        _restore_env(saved_env)
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if size == 0:
            with contextlib.suppress(OSError):
                path.unlink()
        elif size > 0:
            print(f"native library log: {path}", file=sys.stderr)


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
