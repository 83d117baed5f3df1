"""The usage log: one JSON line per record, rotated and gzipped, never larger than its cap.

Files are {log_dir}/usage-YYYYMMDD-HHMMSS.jsonl; rotated ones become .jsonl.gz on a worker thread.
Each record has a Position (file stem, byte offset after its line): the rollups' watermark.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from picometer.clock import Clock
from picometer.config import StorageConfig
from picometer.record import Record
from picometer.throttle import Throttled

log = structlog.get_logger("picometer.usagelog")

NAME_RE = re.compile(r"^(usage-\d{8}-\d{6})\.jsonl(\.gz)?$")
FREE_CHECK_S = 1.0  # how often the disk guard asks the filesystem for free space
GZIP_SLACK = 1024  # gzip output can exceed incompressible input by a little


@dataclass(frozen=True, order=True, slots=True)
class Position:
    stem: str  # "usage-20261123-171518": names sort in time order
    offset: int  # uncompressed bytes up to and including this record's line


def _stem(path: Path) -> str | None:
    m = NAME_RE.match(path.name)
    return m.group(1) if m else None


def log_files(log_dir: Path) -> list[Path]:
    """Every usage file, oldest first; where a crash left both forms of one file, the complete .gz."""
    by_stem: dict[str, Path] = {}
    if not log_dir.is_dir():
        return []
    for path in log_dir.iterdir():
        stem = _stem(path)
        if stem is not None and (stem not in by_stem or path.name.endswith(".gz")):
            by_stem[stem] = path
    return [by_stem[s] for s in sorted(by_stem)]


def read_records(
    log_dir: Path, after: Position | None = None, until: Position | None = None
) -> Iterator[tuple[dict[str, Any], Position]]:
    """Records after `after` (and up to `until`), oldest first; .jsonl and .jsonl.gz alike; torn or corrupt
    lines skipped."""
    for path in log_files(log_dir):
        stem = _stem(path)
        assert stem is not None
        if after is not None and stem < after.stem:
            continue
        if until is not None and stem > until.stem:
            return
        offset = 0
        try:
            with _opened(path) as f:
                for line in f:
                    offset += len(line)
                    if after is not None and stem == after.stem and offset <= after.offset:
                        continue
                    if not line.endswith(b"\n"):
                        break  # a torn last line: the write that made it never finished
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if until is not None and Position(stem, offset) > until:
                        return
                    if isinstance(record, dict):
                        yield record, Position(stem, offset)
        except (OSError, EOFError) as e:  # a truncated .gz: keep what was readable
            log.warning("usage file partly unreadable", path=str(path), error=str(e))


def _opened(path: Path) -> io.BufferedIOBase:
    """A usage file to read. One compressed since it was listed (rotation's worker: the .gz in place, then the
    .jsonl gone) is read in its .gz form, so a replay or a heal while the daemon runs skips no file."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return gzip.open(path.with_name(path.name + ".gz"), "rb")


def _compress(path: Path) -> None:
    """path -> path.gz via a temporary file, then the original goes; a crash leaves one complete form."""
    target = path.with_name(path.name + ".gz")
    tmp = path.with_name(path.name + ".gz.tmp")
    with open(path, "rb") as src, open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst:
        shutil.copyfileobj(src, dst, 256 * 1024)
    with open(tmp, "rb+") as done:
        os.fsync(done.fileno())
    os.replace(tmp, target)
    path.unlink()


class UsageLog:
    """Appends records; rotates, compresses and prunes so the directory never passes log_max_bytes."""

    def __init__(
        self,
        storage: StorageConfig,
        clock: Clock,
        *,
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.dir = Path(storage.log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = storage.log_max_bytes
        self.rotate_bytes = storage.log_rotate_bytes
        self.retention = timedelta(days=storage.log_retention_days)
        self.min_free = storage.min_free_mb * 1024 * 1024
        self.clock = clock
        self._free_bytes = free_bytes or (lambda p: shutil.disk_usage(p).free)
        self._write: Callable[[int, bytes], int] = os.write  # a seam: tests inject ENOSPC here
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picometer-log")
        self._compressing: Future[None] | None = None
        self._compressing_path: Path | None = None
        self._free_checked_at = float("-inf")
        self.disk_low = False
        self.written = 0
        self.dropped = 0
        self._errors = Throttled(log)  # a failing write fails every record: one line a minute
        self._recover()
        self._open_new()
        self._enforce_cap(reserve=self.rotate_bytes)  # the cap may have shrunk since the last run

    # ---------------------------------------------------------------- writing

    def _open_new(self) -> None:
        at = self.clock.now().replace(microsecond=0)
        files = log_files(self.dir)
        newest = _stem(files[-1]) if files else None
        if newest is not None:
            # Names sort in the order files were made, whatever the clock says (a Pi without a real-time
            # clock boots in the past): replay goes by this order, so nothing is read twice or skipped.
            last = datetime.strptime(newest, "usage-%Y%m%d-%H%M%S").replace(tzinfo=UTC)
            at = max(at, last + timedelta(seconds=1))
        while True:  # two rotations in one second: take the next free second, names stay in time order
            self.path = self.dir / at.strftime("usage-%Y%m%d-%H%M%S.jsonl")
            if not self.path.exists() and not self.path.with_name(self.path.name + ".gz").exists():
                break
            at += timedelta(seconds=1)
        # O_APPEND: each write() lands whole at the end, even with another writer on the file.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._stem = self.path.name.removesuffix(".jsonl")
        self.offset = 0

    def write(self, record: Record) -> Position | None:
        """One write() per record. None when the line was dropped (disk low or full)."""
        line = (record.to_json() + "\n").encode("utf-8", "surrogateescape")
        if self._disk_is_low():
            self.dropped += 1
            return None
        if self.offset and self.offset + len(line) > self.rotate_bytes:
            self.rotate()
        try:
            n = self._write(self._fd, line)
        except OSError as e:
            self._dropped_on(e)
            return None
        if n != len(line):  # a short write on a full disk: cut it off so no torn line joins the next one
            os.ftruncate(self._fd, self.offset)
            self._dropped_on(OSError(errno.ENOSPC, "short write"))
            return None
        self.offset += n
        self.written += 1
        return Position(self._stem, self.offset)

    def _dropped_on(self, e: OSError) -> None:
        self.dropped += 1
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
            self._errors.error("usage log write failed", path=str(self.path), error=str(e))
        elif not self.disk_low:
            log.warning("usage log: disk full, dropping raw lines (rollups continue)", path=str(self.path))
        self.disk_low = True
        self._free_checked_at = self.clock.monotonic()

    def _disk_is_low(self) -> bool:
        now = self.clock.monotonic()
        if now - self._free_checked_at >= FREE_CHECK_S:
            self._free_checked_at = now
            try:
                low = self._free_bytes(self.dir) < self.min_free
            except OSError:
                low = False
            if low != self.disk_low:
                log.warning(
                    "usage log: free space below min_free_mb, dropping raw lines"
                    if low
                    else "usage log: free space back above min_free_mb",
                    dir=str(self.dir),
                )
            self.disk_low = low
        return self.disk_low

    # ---------------------------------------------------------------- rotation and cap

    def rotate(self) -> None:
        if self._compressing is not None:
            self._compressing.result()  # only a flood gets here: one rotated file at a time keeps the cap exact
        old = self.path
        os.close(self._fd)
        self._open_new()
        self._compressing_path = old
        self._enforce_cap(reserve=self.rotate_bytes + 2 * old.stat().st_size + GZIP_SLACK)
        self._compressing = self._worker.submit(self._compress_quietly, old)

    def _compress_quietly(self, path: Path) -> None:
        try:
            _compress(path)
        except OSError as e:
            log.warning("usage log: could not compress a rotated file", path=str(path), error=str(e))

    def _closed_files(self) -> list[Path]:
        skip = {self.path, self._compressing_path}
        return [p for p in log_files(self.dir) if p not in skip]

    def _enforce_cap(self, reserve: int) -> None:
        """Delete the oldest files until what is closed fits beside `reserve` (current + in-progress)."""
        files = self._closed_files()
        total = sum(_size(p) for p in files)
        while files and total + reserve > self.max_bytes:
            oldest = files.pop(0)
            total -= _size(oldest)
            oldest.unlink(missing_ok=True)

    def prune(self) -> None:
        """Retention: files untouched for log_retention_days go, the current one never."""
        horizon = time.time() - self.retention.total_seconds()
        for path in self._closed_files():
            if _mtime(path) < horizon:
                path.unlink(missing_ok=True)

    def total_bytes(self) -> int:
        return sum(_size(p) for p in self.dir.iterdir() if p.name.startswith("usage-"))

    def _recover(self) -> None:
        """After a crash: finish what a rotation left half done."""
        for path in self.dir.glob("usage-*.jsonl.gz.tmp"):
            path.unlink(missing_ok=True)
        for path in self.dir.glob("usage-*.jsonl"):
            if path.with_name(path.name + ".gz").exists() or path.stat().st_size == 0:
                path.unlink()
            else:
                self._compress_quietly(path)

    # ---------------------------------------------------------------- durability

    def sync(self) -> None:
        """fsync the current file; safe from a worker thread while the loop keeps writing."""
        try:
            fd = os.dup(self._fd)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError as e:
            log.warning("usage log fsync failed", error=str(e))
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sync()
        os.close(self._fd)
        if self._compressing is not None:
            self._compressing.result()
        self._worker.shutdown(wait=True)
        if self.offset == 0:
            self.path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
