"""Atomic writes, run-folder locks and a busy feature cache, without models."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fedbench.store import atomic
from fedbench.store.atomic import DiskFullError, atomic_open, remove_stale_temps, write_json_atomic
from fedbench.store.features import CacheBusyError, CacheError, FeatureCache
from fedbench.store.journal import Journal, compact, read_rows
from fedbench.store.lock import FolderBusyError, folder_lock, is_locked


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"v": 1})
    monkeypatch.setattr(atomic.os, "replace", _enospc)
    with pytest.raises(DiskFullError) as info:
        write_json_atomic(target, {"v": 2, "big": "x" * 100_000})
    assert "no space left" in str(info.value) and str(target) in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"v": 1}  # the old file, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temp file left


def test_a_failed_stream_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "samples.jsonl"
    target.write_text("old\n")
    monkeypatch.setattr(atomic.os, "fsync", _enospc)
    with pytest.raises(DiskFullError):
        with atomic_open(target) as fh:
            fh.write("new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["samples.jsonl"]


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", [])
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_stale_temps_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".x.png.abc.tmp").write_bytes(b"")
    (tmp_path / "keep.png").write_bytes(b"")
    assert remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_journal_full_disk_is_one_error_and_repairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    with Journal(path) as j:
        j.append({"id": "a", "key": "1"})
    monkeypatch.setattr("fedbench.store.journal.os.fsync", _enospc)
    with pytest.raises(DiskFullError):
        with Journal(path) as j:
            j.append({"id": "b", "key": "2"})
    monkeypatch.undo()
    assert [r["id"] for r in compact(path, ["a", "b"])] in (["a"], ["a", "b"])
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# ---- locks ----------------------------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    from fedbench.store.lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold(folder: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    proc = _hold(tmp_path / "run", 30)
    try:
        assert is_locked(tmp_path / "run")
        with pytest.raises(FolderBusyError, match=f"process {proc.pid} "):
            with folder_lock(tmp_path / "run"):
                pass
    finally:
        proc.kill()
        proc.wait()
    # the kernel released the lock of the killed holder: no stale lock blocks the next run
    assert not is_locked(tmp_path / "run")
    with folder_lock(tmp_path / "run"):
        pass


def test_wait_waits_for_the_holder(tmp_path: Path) -> None:
    proc = _hold(tmp_path / "run", 1.5)
    told: list[str] = []
    t0 = time.monotonic()
    with folder_lock(tmp_path / "run", wait=True, on_wait=told.append):
        waited = time.monotonic() - t0
    proc.wait()
    assert waited > 0.5 and len(told) == 1 and f"process {proc.pid}" in told[0]


def test_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    with folder_lock(tmp_path / "run"):
        with folder_lock(tmp_path / "run"):
            pass
        assert not is_locked(tmp_path / "run")  # we hold it: not "locked by another"


# ---- the feature cache ----------------------------------------------------------------------------

def test_cache_path_misuse_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="is a folder"):
        FeatureCache(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    with pytest.raises(CacheError, match="not a fedbench feature cache"):
        FeatureCache(text)


def test_busy_cache_waits_visibly_then_writes(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    FeatureCache(path).close()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    told: list[str] = []
    cache = FeatureCache(path, timeout_s=30, on_wait=told.append)
    release = threading.Timer(4.0, lambda: blocker.execute("COMMIT"))  # past SQLite's own 1 s wait
    release.start()
    t0 = time.monotonic()
    cache.put_many([("k", b"v")])
    assert time.monotonic() - t0 > 3 and len(told) == 1 and "waiting up to 30 s" in told[0]
    assert cache.get_raw("k") == b"v"
    release.join()
    blocker.close()
    cache.close()


def test_busy_cache_gives_up_after_its_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.sqlite"
    FeatureCache(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    monkeypatch.setenv("FEDBENCH_CACHE_TIMEOUT_S", "0")
    cache = FeatureCache(path, on_wait=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CacheBusyError, match="FEDBENCH_CACHE_TIMEOUT_S"):
            cache.put_many([("k", b"v")])
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    cache.put_many([("k", b"v")])  # nothing was half-written; it works once free
    assert len(cache) == 1
    cache.close()


def test_a_full_disk_under_the_cache_is_a_disk_full_error(tmp_path: Path) -> None:
    class Full:
        def __enter__(self) -> "Full":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def executemany(self, *args: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

    cache = FeatureCache(tmp_path / "f.sqlite")
    real = cache._db
    cache._db = Full()  # type: ignore[assignment]
    with pytest.raises(DiskFullError, match="f.sqlite"):
        cache.put_many([("k", b"v")])
    cache._db = real
    cache.close()
