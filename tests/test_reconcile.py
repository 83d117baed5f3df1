"""`picometer reconcile`: OpenAI- and Anthropic-shaped cost exports held against a real rollups file
through the real CLI; the variance per day and model, flags past the threshold, clear errors on bad files."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from picometer.record import Record
from picometer.reports.reconcile import InvoiceError, base_model, compare, read_invoice
from picometer.store.rollups import Rollups
from tests.cli import run

DAYS = [date(2026, 11, 16), date(2026, 11, 17), date(2026, 11, 18)]
# dollars metered per day: (provider, model, cost)
METERED = {
    DAYS[0]: [("openai", "gpt-4o-mini", 1.20), ("openai", "gpt-4o", 3.00), ("anthropic", "claude-haiku-4-5", 0.50)],
    DAYS[1]: [("openai", "gpt-4o-mini", 0.80), ("anthropic", "claude-haiku-4-5", 0.70)],
    DAYS[2]: [("openai", "gpt-4o-mini", 1.00), ("openai", "gpt-4o", 2.00)],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    rollups = Rollups(tmp_path / "data" / "rollups.db")
    for day, spends in METERED.items():
        for provider, model, dollars in spends:
            for i in range(4):  # four calls through the (UTC) day
                at = datetime(day.year, day.month, day.day, 1 + 6 * i, tzinfo=UTC)
                rec = Record(ts=at.isoformat(), request_id="r", provider=provider, model=model, cost_usd=dollars / 4)
                rollups.add(rec, None)
    rollups.close()
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"storage": {"data_dir": str(tmp_path / "data")}}))
    return path


def reconcile(config: Path, invoice: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("reconcile", "--config", str(config), str(invoice), *args)


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def test_an_openai_cost_export_flags_the_day_that_is_off(config: Path, tmp_path: Path) -> None:
    lines = ["start_time,end_time,amount_value,amount_currency,line_item,project_id"]
    billed = {DAYS[0]: {"gpt-4o-mini": 1.20, "gpt-4o": 3.00}, DAYS[1]: {"gpt-4o-mini": 0.80},
              DAYS[2]: {"gpt-4o-mini": 1.00, "gpt-4o": 2.50}}  # fmt: skip
    for day, models in billed.items():
        for model, dollars in models.items():
            dated = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}[model]
            for part, share in (("input", 0.25), ("output", 0.75)):
                lines.append(f'{unix(day)},{unix(day) + 86400},{dollars * share},usd,"{dated}, {part}",proj_1')
    invoice = tmp_path / "openai-costs.csv"
    invoice.write_text("\n".join(lines) + "\n")
    done = reconcile(config, invoice, "--provider", "openai")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert ["2026-11-18", "gpt-4o", "2.5000", "2.0000", "-0.5000", "-20.0%", "<--", "check"] in table(out)
    assert ["2026-11-16", "gpt-4o-mini", "1.2000", "1.2000", "+0.0000", "+0.0%"] in table(out)
    assert "days to check: 2026-11-18\n" in out
    assert "claude" not in out, "--provider keeps the other provider's calls out"


def test_an_anthropic_export_within_the_threshold_passes(config: Path, tmp_path: Path) -> None:
    invoice = tmp_path / "anthropic.csv"
    invoice.write_text(
        "usage_date_utc,model,workspace,token_type,cost_usd\n"
        "2026-11-16,claude-haiku-4-5-20251001,Default,input,0.20\n"
        "2026-11-16,claude-haiku-4-5-20251001,Default,output,0.31\n"
        "2026-11-17,claude-haiku-4-5-20251001,Default,output,0.70\n"
        "2026-11-17,,Default,web_search,0.00\n"
    )
    done = reconcile(config, invoice, "--provider", "anthropic")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ["2026-11-16", "claude-haiku-4-5", "0.5100", "0.5000", "-0.0100", "-2.0%"] in table(done.stdout)
    assert "no day is off by more than the threshold" in done.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"date,model,spend\n2026-11-16,gpt-4o,1\n", "no cost column: expected one of cost_usd"),
        (b"model,cost_usd\ngpt-4o,1\n", "no date column"),
        (b"date,model,cost_usd\nyesterday,gpt-4o,1\n", "line 2: 'yesterday' is not a date"),
        (b"date,model,cost_usd\n2026-11-16,gpt-4o,lots\n", "line 2: 'lots' is not an amount"),
        ("date,model,cost_usd\n2026-11-16,gpt-4o,1\n".encode("utf-16"), "not UTF-8"),
        (b"", "the file is empty"),
    ],
)
def test_a_file_that_is_not_a_cost_export_gets_a_clear_error(
    config: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    invoice = tmp_path / "bad.csv"
    invoice.write_bytes(content)
    done = reconcile(config, invoice)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_per_day_export_without_models_is_compared_by_day(tmp_path: Path) -> None:
    invoice = read_invoice(b"date,cost\n2026-11-16,4.70\n2026-11-17,$1.50\n")
    ours = {(DAYS[0], "gpt-4o"): 3.0, (DAYS[0], "gpt-4o-mini"): 1.7, (DAYS[1], "claude"): 1.5, (DAYS[2], "x"): 9.0}
    lines = compare(invoice, ours, 5.0, 0.01)
    assert [(ln.day, ln.invoiced, ln.metered, ln.flagged) for ln in lines] == [
        (DAYS[0], 4.70, pytest.approx(4.7), False),
        (DAYS[1], 1.50, 1.5, False),
    ]
    with pytest.raises(InvoiceError):
        read_invoice(b"date,cost\n2026-11-16\n")


@given(
    st.dictionaries(st.tuples(st.sampled_from(DAYS), st.sampled_from(["a", "b", "c"])), st.floats(0, 100), max_size=9),
    st.dictionaries(st.tuples(st.sampled_from(DAYS), st.sampled_from(["a", "b", "d"])), st.floats(0, 100), max_size=9),
)
def test_the_lines_add_up_to_both_sides_over_the_invoiced_days(
    invoice: dict[tuple[date, str], float], ours: dict[tuple[date, str], float]
) -> None:
    lines = compare(invoice, ours, 5.0, 0.01)
    days = {d for d, _ in invoice}
    assert sum(ln.invoiced for ln in lines) == pytest.approx(sum(invoice.values()))
    assert sum(ln.metered for ln in lines) == pytest.approx(sum(v for (d, _), v in ours.items() if d in days))
    for ln in lines:
        assert ln.flagged == (abs(ln.variance) >= 0.01 and (ln.invoiced == 0 or abs(ln.variance) / ln.invoiced > 0.05))


def test_release_dates_are_dropped_from_model_names() -> None:
    assert base_model("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert base_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku"
    assert base_model("gpt-4.1") == "gpt-4.1"
