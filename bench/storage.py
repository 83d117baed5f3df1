"""make bench (storage): `report` over a year of rollups made from 1,000,000 records."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from picometer.record import Record, rfc3339_ms
from picometer.store.rollups import Rollups, totals

RECORDS = int(os.environ.get("BENCH_RECORDS", "1000000"))
WORKFLOWS = ("summarizer", "telegram-bot", "nightly-report", "heartbeat", "n8n-webhook", "untagged")
MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"), ("anthropic", "claude-haiku-4-5"))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="picometer-bench-storage-"))
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=365)
    rng = random.Random(7)
    rollups = Rollups(work / "data" / "rollups.db")
    t0 = time.perf_counter()
    step = (end - start).total_seconds() / RECORDS
    for i in range(RECORDS):
        provider, model = rng.choice(MODELS)
        rollups.add(
            Record(
                ts=rfc3339_ms(start + timedelta(seconds=i * step)),
                request_id="x",
                workflow=rng.choice(WORKFLOWS),
                env=rng.choice(("prod", "dev")),
                provider=provider,
                model=model,
                status="ok" if rng.random() < 0.97 else "error",
                attempts=1,
                input_tokens=rng.randint(50, 4000),
                output_tokens=rng.randint(10, 800),
                cost_usd=rng.random() / 1000,
                latency_ms=rng.lognormvariate(7, 0.8),
            ),
            None,
        )
        if i % 100_000 == 0:
            rollups.flush()
    rollups.flush()
    fold_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    year = totals(rollups.summary(0, 10**7, "workflow"))
    year_s = time.perf_counter() - t1
    rollups.close()
    assert year["requests"] == RECORDS

    config = work / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{work / "data"}"\nlog_dir = "{work / "logs"}"\n')
    timings = {}
    for period in ("today", "month", "30d"):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "picometer", "report", "--config", str(config), "--period", period, "--by", "model"],
            check=True,
            capture_output=True,
        )
        timings[period] = time.perf_counter() - t
    size = (work / "data" / "rollups.db").stat().st_size
    print(
        f"rollups from {RECORDS:,} records over 365 days: folded and written in {fold_s:.1f} s, "
        f"database {size / 1e6:.1f} MB"
    )
    print(f"whole-year summary query (in process): {year_s * 1000:.0f} ms")
    for period, seconds in timings.items():
        print(f"picometer report --period {period:<6} (whole command, cold start included): {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
