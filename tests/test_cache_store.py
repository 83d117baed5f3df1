"""The response cache on disk: hits and misses, expiry, LRU within max_mb, damaged files, threads, a crash,
and its [cache] config."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from picometer.cache.store import MB, ROW_OVERHEAD, CacheStore, Entry
from picometer.config import ConfigError, config_from_dict, restart_needed
from tests.clocks import ManualClock

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SSE = b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n'


def answer(body: bytes = b'{"choices":[{"message":{"content":"ok"}}]}', cost: float | None = 0.0021) -> Entry:
    return Entry(200, "application/json", body, cost, "gpt-4o-mini", "openai")


def on_disk(path: Path) -> tuple[int, int]:
    """(entries, counted bytes) as the file holds them, read by a connection of its own."""
    if not path.exists():
        return 0, 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count, total, answers = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(length(body)), 0) FROM entry"
        ).fetchone()
    finally:
        db.close()
    assert total == answers + count * ROW_OVERHEAD
    return count, total


@pytest.fixture
def store(tmp_path: Path) -> CacheStore:
    return CacheStore(tmp_path / "data" / "cache.sqlite", max_mb=1, ttl_s=3600)


# ---------------------------------------------------------------- hits and misses


def test_a_stored_answer_is_found_with_everything_needed_to_replay_and_record_it(store: CacheStore) -> None:
    assert store.get("a" * 64, T0) is None
    assert store.put("a" * 64, answer(), T0)
    assert store.put("b" * 64, Entry(200, "text/event-stream", SSE, 0.0004, "claude-haiku-4-5", "anthropic"), T0)
    hit = store.get("a" * 64, T0 + timedelta(seconds=5))
    assert hit is not None
    assert (hit.status, hit.content_type, hit.body) == (200, "application/json", answer().body)
    assert (hit.cost_usd, hit.model, hit.provider) == (0.0021, "gpt-4o-mini", "openai")
    assert hit.created_at == T0.timestamp() and hit.last_used_at == T0.timestamp() + 5
    assert hit.expires_at == T0.timestamp() + 3600
    stream = store.get("b" * 64, T0)
    assert stream is not None and stream.body == SSE and stream.content_type == "text/event-stream"
    assert store.get("c" * 64, T0) is None
    assert store.stats().entries == 2 and on_disk(store.path)[0] == 2


def test_an_answer_of_unknown_cost_is_kept_as_unknown(store: CacheStore) -> None:
    store.put("a" * 64, answer(cost=None), T0)
    hit = store.get("a" * 64, T0)
    assert hit is not None and hit.cost_usd is None


def test_a_second_answer_under_one_key_replaces_the_first(store: CacheStore) -> None:
    store.put("a" * 64, answer(b"first"), T0)
    store.put("a" * 64, answer(b"second"), T0 + timedelta(seconds=1))
    hit = store.get("a" * 64, T0 + timedelta(seconds=2))
    assert hit is not None and hit.body == b"second"
    assert store.stats().entries == 1 and store.stats().bytes == len(b"second") + ROW_OVERHEAD
    assert on_disk(store.path) == (1, len(b"second") + ROW_OVERHEAD)


# ---------------------------------------------------------------- expiry


def test_an_answer_expires_after_ttl_s_and_is_deleted(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    store = CacheStore(tmp_path / "cache.sqlite", max_mb=1, ttl_s=600)
    store.put("a" * 64, answer(), clock.now())
    clock.advance(599)
    assert store.get("a" * 64, clock.now()) is not None, "a hit does not extend its life"
    clock.advance(1)
    assert store.get("a" * 64, clock.now()) is None
    assert store.stats().entries == 0 and on_disk(store.path) == (0, 0)


def test_prune_deletes_only_what_has_expired(store: CacheStore) -> None:
    for i in range(150):
        store.put(f"{i:064x}", answer(), T0 + timedelta(seconds=i * 60))
    assert store.prune(T0 + timedelta(hours=2)) == 61  # put at minutes 0 to 60, an hour to live
    assert store.stats().entries == 89 and on_disk(store.path)[0] == 89
    assert store.get(f"{60:064x}", T0 + timedelta(hours=2)) is None
    assert store.get(f"{61:064x}", T0 + timedelta(hours=2)) is not None
    assert store.prune(T0 + timedelta(hours=2)) == 0


# ---------------------------------------------------------------- size


def test_the_least_recently_used_answers_go_first_when_max_mb_is_reached(store: CacheStore) -> None:
    quarter = MB // 4 - ROW_OVERHEAD  # the largest answer stored: four fill the cache
    for i in range(4):
        assert store.put(f"{i:064x}", answer(bytes([i]) * quarter), T0 + timedelta(seconds=i))
    assert store.stats().bytes == MB
    assert store.get(f"{0:064x}", T0 + timedelta(seconds=10)) is not None  # now the most recently used
    assert store.put(f"{4:064x}", answer(b"x" * 1000), T0 + timedelta(seconds=11))
    kept = [i for i in range(5) if store.get(f"{i:064x}", T0 + timedelta(seconds=12)) is not None]
    assert kept == [0, 2, 3, 4], "entry 1, used least recently, went"
    assert store.stats().bytes <= MB and on_disk(store.path)[1] <= MB


def test_an_answer_larger_than_a_quarter_of_max_mb_is_not_stored(store: CacheStore) -> None:
    for i in range(3):
        store.put(f"{i:064x}", answer(b"x" * 200_000), T0)
    assert not store.put("f" * 64, answer(b"x" * (MB // 4 - ROW_OVERHEAD + 1)), T0)
    assert store.get("f" * 64, T0) is None
    assert store.stats().entries == 3, "nothing was evicted for it"


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "get"]),
            st.integers(0, 7),  # the key: few, so they repeat
            st.integers(0, 20_000) | st.sampled_from([9_000, 13_800]),  # the answer's length; a quarter: 13_824
            st.integers(1, 3),  # seconds since the last step: each step later, so a get reorders
        ),
        min_size=8,
        max_size=50,
    )
)
def test_no_sequence_of_puts_takes_the_cache_past_max_mb_and_eviction_is_lru(
    steps: list[tuple[str, int, int, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = CacheStore(Path(tmp) / "cache.sqlite", max_mb=1, ttl_s=3600)
        store.max_bytes = 64 * 1024  # a small cache, so a few puts fill it
        model: dict[str, tuple[float, int, int]] = {}  # key -> (last used, insertion order, size): an LRU by hand
        now = T0
        for order, (op, k, length, pause) in enumerate(steps):
            now += timedelta(seconds=pause)
            key = f"{k:064x}"
            if op == "get":
                hit = store.get(key, now)
                assert (hit is not None) == (key in model)
                if hit is not None:
                    assert hit.body == bytes([k]) * len(hit.body) and len(hit.body) == model[key][2] - ROW_OVERHEAD
                    model[key] = (now.timestamp(), model[key][1], model[key][2])
                continue
            size = length + ROW_OVERHEAD
            stored = store.put(key, answer(bytes([k]) * length), now)
            assert stored == (size <= store.max_bytes // 4)
            if stored:
                model.pop(key, None)
                while sum(s for _, _, s in model.values()) + size > store.max_bytes:
                    del model[min(model, key=lambda m: model[m][:2])]
                model[key] = (now.timestamp(), order, size)
            stats = store.stats()
            assert stats.bytes <= store.max_bytes
            expected = (len(model), sum(size for _, _, size in model.values()))
            assert (stats.entries, stats.bytes) == on_disk(store.path) == expected
        store.close()


def test_the_file_itself_stays_within_max_mb(tmp_path: Path) -> None:
    """ROW_OVERHEAD covers what SQLite adds: answers near 2 KB, one to a page, are its worst case."""
    store = CacheStore(tmp_path / "cache.sqlite", max_mb=1, ttl_s=3600)
    for i in range(1200):
        store.put(f"{i:064x}", answer(os.urandom(1950 + i % 50)), T0 + timedelta(seconds=i))
    assert store.stats().bytes <= MB
    store.close()
    db = sqlite3.connect(store.path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert store.path.stat().st_size <= MB


def test_a_smaller_max_mb_or_a_shorter_ttl_on_reload_applies_at_once(store: CacheStore) -> None:
    for i in range(40):
        store.put(f"{i:064x}", answer(b"x" * 20_000), T0 + timedelta(seconds=i))
    assert store.stats().entries == 40
    store.reconfigure(config_from_dict({"cache": {"max_mb": 1, "ttl_s": 3600}}))
    assert store.stats().entries == 40, "nothing changed, nothing goes"
    store.max_bytes = 10 * (20_000 + ROW_OVERHEAD)  # as a max_mb this small would
    store.reconfigure(config_from_dict({"cache": {"max_mb": 1, "ttl_s": 60}}))
    assert store.max_bytes == MB and store.ttl_s == 60
    assert store.get(f"{39:064x}", T0 + timedelta(seconds=98)) is not None
    assert store.get(f"{0:064x}", T0 + timedelta(seconds=61)) is None, "stored for an hour, now for a minute"


def test_a_smaller_max_mb_or_a_shorter_ttl_at_the_next_start_applies_to_what_was_stored(tmp_path: Path) -> None:
    before = CacheStore(tmp_path / "cache.sqlite", max_mb=2, ttl_s=3600)
    for i in range(60):
        before.put(f"{i:064x}", answer(b"x" * 30_000), T0 + timedelta(seconds=i))
    assert before.stats().bytes > MB
    before.close()
    after = CacheStore(tmp_path / "cache.sqlite", max_mb=1, ttl_s=120)
    assert after.stats().bytes <= MB and on_disk(after.path)[1] <= MB
    assert after.get(f"{59:064x}", T0 + timedelta(seconds=170)) is not None, "the most recently used stay"
    assert after.get(f"{59:064x}", T0 + timedelta(seconds=179)) is None, "stored for an hour, now for 2 minutes"


def test_a_larger_max_mb_on_reload_takes_bigger_answers(store: CacheStore) -> None:
    big = answer(b"x" * MB)
    assert not store.put("a" * 64, big, T0)
    store.reconfigure(config_from_dict({"cache": {"max_mb": 8}}))
    assert store.put("a" * 64, big, T0)


# ---------------------------------------------------------------- the file


def test_a_cache_never_used_makes_no_file(store: CacheStore) -> None:
    assert store.stats().entries == 0 and store.stats().bytes == 0
    store.close()
    assert not store.path.parent.exists()


def test_a_damaged_file_is_set_aside_and_the_cache_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is no database, an SD card ate it " * 200)
    with capture_logs() as lines:
        store = CacheStore(path, max_mb=1, ttl_s=3600)
        assert store.get("a" * 64, T0) is None
        assert store.put("a" * 64, answer(), T0)
        assert store.get("a" * 64, T0) is not None
    assert [line["event"] for line in lines] == ["damaged response cache set aside; starting empty"]
    assert store.moved_aside is not None and store.moved_aside.read_bytes().startswith(b"this is no database")
    assert store.moved_aside.name.startswith("cache.sqlite.corrupt-")


def test_a_file_damaged_while_running_is_set_aside_and_the_calls_carry_on(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "cache.sqlite", max_mb=8, ttl_s=3600)
    for i in range(300):
        store.put(f"{i:064x}", answer(os.urandom(3000)), T0)
    store.close()  # everything into the main file, so the damage hits real pages
    with store.path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(store.path.stat().st_size - 4096))
    with capture_logs() as lines:
        results = [store.get(f"{i:064x}", T0) for i in range(300)]  # never raises
        assert store.put("f" * 64, answer(), T0)
        hit = store.get("f" * 64, T0)
    assert hit is not None and hit.body == answer().body
    assert all(r is None or len(r.body) == 3000 for r in results)
    assert [line["event"] for line in lines] == ["damaged response cache set aside; starting empty"]
    assert list(tmp_path.glob("cache.sqlite.corrupt-*"))


def test_an_unwritable_data_dir_makes_misses_and_one_log_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    store = CacheStore(blocker / "cache.sqlite", max_mb=1, ttl_s=3600)
    with capture_logs() as lines:
        for _ in range(5):
            assert store.get("a" * 64, T0) is None
            assert store.put("a" * 64, answer(), T0) is False
    assert [line["event"] for line in lines] == ["response cache unavailable; calls go upstream"]


def test_answers_survive_a_crash(tmp_path: Path) -> None:
    """A daemon killed after a put (no close, no checkpoint): the answer is there at the next start."""
    path = tmp_path / "cache.sqlite"
    script = (
        "import os; from datetime import datetime, UTC; from pathlib import Path;"
        "from picometer.cache.store import CacheStore, Entry;"
        f"s = CacheStore(Path({str(path)!r}), 1, 3600);"
        "s.put('a' * 64, Entry(200, 'application/json', b'{}', 0.5, 'm', 'p'), datetime.now(UTC));"
        "os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert path.with_name("cache.sqlite-wal").exists(), "it was killed with its log unmerged"
    store = CacheStore(path, max_mb=1, ttl_s=3600)
    hit = store.get("a" * 64, datetime.now(UTC))
    assert hit is not None and hit.cost_usd == 0.5 and store.stats().entries == 1


def test_threads_may_get_and_put_at_once(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "cache.sqlite", max_mb=1, ttl_s=3600)
    problems: list[str] = []

    def work(n: int) -> None:
        try:
            for i in range(150):
                k = (n * 7 + i) % 40
                key = f"{k:064x}"
                if i % 3:
                    hit = store.get(key, T0 + timedelta(seconds=i))
                    if hit is not None and hit.body != bytes([k]) * len(hit.body):
                        problems.append(f"{key} answered with another key's bytes")
                else:
                    store.put(key, answer(bytes([k]) * (10_000 + 1000 * k)), T0 + timedelta(seconds=i))
        except Exception as e:  # any failure in a thread is the test's failure
            problems.append(repr(e))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    stats = store.stats()
    assert stats.entries > 0 and stats.bytes <= MB
    assert (stats.entries, stats.bytes) == on_disk(store.path)


# ---------------------------------------------------------------- config


def test_the_cache_is_off_by_default_and_reads_its_table() -> None:
    default = config_from_dict({}).cache
    assert (default.enabled, default.max_mb, default.ttl_s, default.workflows) == (False, 64, 3600, ())
    c = config_from_dict({"cache": {"enabled": True, "max_mb": 16, "ttl_s": 600, "workflows": ["heartbeat"]}})
    assert (c.cache.enabled, c.cache.max_mb, c.cache.ttl_s, c.cache.workflows) == (True, 16, 600.0, ("heartbeat",))
    assert CacheStore.from_config(c).path.name == "cache.sqlite"


@pytest.mark.parametrize(
    ("table", "key", "fix"),
    [
        ({"max_mb": 0}, "[cache].max_mb", "at least 1"),
        ({"ttl_s": 0}, "[cache].ttl_s", "at least 1"),
        ({"workflows": ["ok", "no spaces"]}, "[cache].workflows[1]", "letters, digits"),
        ({"workflows": "heartbeat"}, "[cache].workflows", "write it as"),
        ({"size_mb": 4}, "[cache].size_mb", "known keys here: enabled, max_mb"),
    ],
)
def test_cache_config_errors_name_the_key_and_the_fix(table: dict[str, object], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"cache": table})
    assert info.value.key == key and fix in str(info.value)


def test_a_reloaded_cache_table_needs_no_restart() -> None:
    old = config_from_dict({})
    new = config_from_dict({"cache": {"enabled": True, "max_mb": 8, "ttl_s": 60, "workflows": ["heartbeat"]}})
    assert restart_needed(old, new) == []
