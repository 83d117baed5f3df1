"""`picometer reconcile`: the provider's own cost export against what picometer metered, per UTC day and
model, with the days whose variance passes a threshold flagged.

Expected columns (names matched without regard to case; the first present wins):
- the day: `date`, `usage_date_utc`, `start_time`, `starting_at`, `day`, `timestamp`: an ISO date or
  date-time, or Unix seconds (OpenAI's cost export: Usage > Export > Cost, 1 day, grouped by line item);
- the model: `model`, `model_name`, `line_item` (OpenAI's "gpt-4o-mini-2024-07-18, input": the part
  before the comma); rows without one (web search, tools) count as "(other)";
- the cost in US dollars: `cost_usd`, `amount_value`, `cost`, `amount_usd`, `amount`.
Model names are compared without a trailing release date (gpt-4o-mini-2024-07-18 = gpt-4o-mini,
claude-3-5-haiku-20241022 = claude-3-5-haiku). Providers export in UTC, so days here are UTC days.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

DATE_COLUMNS = ("date", "usage_date_utc", "start_time", "starting_at", "day", "timestamp")
MODEL_COLUMNS = ("model", "model_name", "line_item")
COST_COLUMNS = ("cost_usd", "amount_value", "cost", "amount_usd", "amount")
OTHER = "(other)"
_RELEASE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")

Key = tuple[date, str]  # UTC day, model


class InvoiceError(ValueError):
    pass


def base_model(name: str) -> str:
    """A model name without its release date, so requested and billed names meet."""
    return _RELEASE.sub("", name.strip()) or OTHER


def _column(header: list[str], names: Iterable[str], what: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    raise InvoiceError(
        f"no {what} column: expected one of {', '.join(names)}; the file has {', '.join(header) or 'no header'}"
    )


def _day(value: str, line: int) -> date:
    text = value.strip()
    try:
        if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC).date()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvoiceError(f"line {line}: {value!r} is not a date") from None
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


def read_invoice(data: bytes) -> dict[Key, float]:
    """Dollars per (UTC day, model) from a provider's cost export."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvoiceError(f"the file is not UTF-8 text (byte {e.start}); export it again as CSV") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise InvoiceError("the file is empty")
    header, body = rows[0], rows[1:]
    at = _column(header, DATE_COLUMNS, "date")
    cost_at = _column(header, COST_COLUMNS, "cost")
    try:
        model_at: int | None = _column(header, MODEL_COLUMNS, "model")
    except InvoiceError:
        model_at = None  # a per-day total: compared against everything metered that day
    out: dict[Key, float] = {}
    for line, row in enumerate(body, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(at, cost_at):
            raise InvoiceError(f"line {line}: {len(row)} cells, fewer than the header's")
        try:
            dollars = float(row[cost_at].strip().lstrip("$").replace(",", "") or 0)
        except ValueError:
            raise InvoiceError(f"line {line}: {row[cost_at]!r} is not an amount") from None
        model = OTHER
        if model_at is not None and model_at < len(row) and row[model_at].strip():
            model = base_model(row[model_at].split(",")[0])
        key = (_day(row[at], line), model if model_at is not None else "*")
        out[key] = out.get(key, 0.0) + dollars
    return out


def metered(hourly: Iterable[Mapping[str, Any]], providers: frozenset[str] | None) -> dict[Key, float]:
    """Dollars per (UTC day, model) from the rollups' hourly rows (optionally one provider's)."""
    out: dict[Key, float] = {}
    for row in hourly:
        if providers is not None and row["provider"] not in providers:
            continue
        day = datetime.fromtimestamp(row["hour"] * 3600, UTC).date()
        key = (day, base_model(row["model"]) if row["model"] else OTHER)
        out[key] = out.get(key, 0.0) + row["cost_usd"]
    return out


@dataclass(frozen=True, slots=True)
class Line:
    day: date
    model: str
    invoiced: float
    metered: float
    flagged: bool

    @property
    def variance(self) -> float:
        return self.metered - self.invoiced

    @property
    def pct(self) -> float | None:
        return None if self.invoiced == 0 else self.variance / self.invoiced


def compare(
    invoice: Mapping[Key, float], ours: Mapping[Key, float], threshold_pct: float, min_usd: float
) -> list[Line]:
    """One line per day and model seen on either side; a line is flagged when it is off by more than
    `threshold_pct` percent and by at least `min_usd` dollars (cents of rounding are not news)."""
    if invoice and all(model == "*" for _, model in invoice):  # the export has no model column: days only
        by_day: dict[Key, float] = {}
        for (day, _), dollars in ours.items():
            by_day[(day, "*")] = by_day.get((day, "*"), 0.0) + dollars
        ours = by_day
    days = {day for day, _ in invoice}
    lines = []
    for key in sorted(set(invoice) | {k for k in ours if k[0] in days}):
        billed, seen = invoice.get(key, 0.0), ours.get(key, 0.0)
        off = abs(seen - billed)
        flagged = off >= min_usd and (billed == 0 or off / billed * 100 > threshold_pct)
        lines.append(Line(key[0], key[1], billed, seen, flagged))
    return lines


def render(lines: list[Line]) -> str:
    head = f"{'day':<12}{'model':<28}{'invoice $':>12}{'metered $':>12}{'variance $':>12}{'%':>8}"
    out = [head, "-" * len(head)]
    for ln in lines:
        pct = "-" if ln.pct is None else f"{ln.pct:+.1%}"
        mark = "  <-- check" if ln.flagged else ""
        out.append(
            f"{ln.day.isoformat():<12}{ln.model[:27]:<28}{ln.invoiced:>12.4f}{ln.metered:>12.4f}"
            f"{ln.variance:>+12.4f}{pct:>8}{mark}"
        )
    billed, seen = sum(ln.invoiced for ln in lines), sum(ln.metered for ln in lines)
    total_pct = f"{(seen - billed) / billed:+.1%}" if billed else "-"
    out += ["-" * len(head), f"{'total':<40}{billed:>12.4f}{seen:>12.4f}{seen - billed:>+12.4f}{total_pct:>8}"]
    flagged = sorted({ln.day.isoformat() for ln in lines if ln.flagged})
    out.append(f"days to check: {', '.join(flagged)}" if flagged else "no day is off by more than the threshold")
    out.append(
        "(metered below the invoice: calls that did not go through picometer, or prices to update with "
        "[prices]; above: calls the provider did not bill, or a discount)"
    )
    return "\n".join(out)
