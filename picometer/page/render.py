"""The page as HTML, from plain data (what the operations answer). Pure: every text that comes from data goes
through `escape` (workflow names may hold anything), no script, nothing fetched from elsewhere. Every list is
bounded, so the page stays small however many workflows, caps or alerts there are."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from html import escape
from typing import Any

from picometer.numbers import count, money
from picometer.page import charts
from picometer.page.style import CSS
from picometer.record import Record
from picometer.reports.report import budget_words

PAGE_BYTES = 96_000  # the whole page; the workflows table gets what the other parts leave (they are bounded)
CAPS_SHOWN = 20  # the caps closest to their limit; every cap's spend is in the workflows table too
OBJECTIVES_SHOWN = 10  # the workflows with the least error budget left
ALERTS_SHOWN = 10
MESSAGE_CHARS = 400  # an alert's message on the page; the whole one is in the log and the chat
NAME_CHARS = 64  # a name as shown (a button still carries the whole name)
REFRESH_S = 60


@dataclass(frozen=True)
class View:
    status: Mapping[str, Any]  # what GET /-/status answers
    spend: Mapping[str, Any]  # Operations.daily_spend: days, workflows (a value per day), month
    workflows: Collection[str]  # every workflow a person can mean
    calls: Sequence[Mapping[str, Any]]  # the last calls, newest first (call_row)
    csrf: str
    logged_in: bool  # a session to log out of (not the loopback page without an admin token)
    now: str  # when this was read, in the operator's zone
    notice: tuple[str, bool] | None = None  # what the last action did, and whether it went well


def call_row(record: Record, zone: tzinfo) -> dict[str, Any]:
    """What the page shows of one call: no prompt, no key."""
    at = datetime.fromisoformat(record.ts).astimezone(zone)
    return {
        "at": at.strftime("%H:%M:%S"),
        "workflow": record.workflow,
        "model": f"{record.provider}/{record.model or '-'}",
        "status": record.status if record.error_type is None else f"{record.status} {record.error_type}",
        "http_status": record.http_status,
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
    }


def document(title: str, body: str, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S};url=/-/ui">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="icon" href="data:,">{meta}<title>{escape(title)}</title><style>{CSS}</style></head>'
        f"<body>{body}</body></html>"
    )


def login(refused: bool = False) -> str:
    """The form that takes the admin token; nothing else is shown before it."""
    wrong = '<p class="notice bad">That is not the admin token.</p>' if refused else ""
    return document(
        "picometer: log in",
        '<form class="login" method="post" action="/-/ui/login"><h1>picometer</h1>'
        f"{wrong}<label for=token>Admin token ([server].admin_token)</label>"
        '<input type="hidden" name="user" value="admin" autocomplete="username">'
        '<input id=token type="password" name="token" required autofocus autocomplete="current-password">'
        "<button>Log in</button></form>",
    )


def message(title: str, text: str) -> str:
    """A page that only says why (a refusal, a stale form)."""
    return document(title, f'<main><section class="wide"><h2>{escape(title)}</h2><p>{escape(text)}</p>'
                           '<p><a href="/-/ui">Back to the page</a></p></section></main>')  # fmt: skip


def page(view: View) -> str:
    s = view.status
    today = money(s["spend_usd"]["today"])
    top = [_header(view), _notice(view.notice), "<main>", _totals(s), _chart(view.spend), _caps(s["budgets"])]
    rest = [
        _objectives(s.get("objectives", [])),
        _canary(s.get("canary", {}).get("probes", [])),
        _alerts(s.get("alerts", []), view.csrf),
        _calls(view.calls),
        "</main>",
        f"<footer>Read at {escape(view.now)}, again every {REFRESH_S} s. "
        "<code>picometer report</code> has the rest.</footer>",
    ]
    title = f"picometer: {today} today"
    used = len(document(title, "".join(top + rest), refresh=True).encode())
    return document(title, "".join([*top, _workflows(view, PAGE_BYTES - used), *rest]), refresh=True)


def _short(name: str, limit: int = NAME_CHARS) -> str:
    """A name as shown, cut to `limit` characters (escaped by the caller)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _empty(title: str, text: str, wide: bool = False) -> str:
    return f"<section{' class=wide' if wide else ''}><h2>{title}</h2><p><small>{escape(text)}</small></p></section>"


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(token)}">'


def _header(view: View) -> str:
    s = view.status
    by = s.get("requests_by_status", {})
    facts = (
        f"{s['version']} · up {_uptime(s['uptime_s'])} · {count(s['requests'])} calls "
        f"({count(by.get('blocked', 0))} blocked) since start"
    )
    out = f'<header><h1>picometer</h1><span class="sub">{escape(facts)}</span>'
    if view.logged_in:
        out += f'<form method="post" action="/-/ui/logout">{_csrf(view.csrf)}<button>Log out</button></form>'
    return out + "</header>"


def _uptime(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    return f"{days}d {rest // 60}h" if days else f"{rest // 60}h {rest % 60:02d}m"


def _notice(notice: tuple[str, bool] | None) -> str:
    if notice is None:
        return ""
    text, good = notice
    return f'<p class="notice{"" if good else " bad"}" role="status">{escape(text)}</p>'


def _by_scope(caps: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Each cap by (scope, period): ("global", "day"), ("workflow:NAME", "month") ..."""
    return {(c["scope"], c["period"]): c for c in caps}


def _totals(s: Mapping[str, Any]) -> str:
    cells, caps = [], _by_scope(s["budgets"])
    for period, label in (("day", "Today"), ("month", "This month")):
        spent = s["spend_usd"]["today" if period == "day" else "month"]
        cap = caps.get(("global", period))
        of = f" <small>of {escape(money(cap['limit_usd']))}</small>" if cap else " <small>no cap</small>"
        bar = charts.gauge(cap["used"]) if cap else ""
        cells.append(f'<div><small>{label}</small><div class="big">{escape(money(spent))}{of}</div>{bar}</div>')
    return f'<section><h2>Spend</h2><div class="caps">{"".join(cells)}</div></section>'


def _caps(caps: Sequence[Mapping[str, Any]]) -> str:
    if not caps:
        return _empty("Budgets", "No caps are set: [budgets] and [workflows.NAME] take daily_usd and monthly_usd.")
    ranked = sorted(caps, key=lambda c: -(c["used"] or 0))
    items = []
    for c in ranked[:CAPS_SHOWN]:
        used = "-" if c["used"] is None else f"{c['used']:.0%}"
        head = f"{_short(c['scope'])}/{c['period']}: {money(c['spent_usd'])} of {money(c['limit_usd'])} ({used})"
        tail = f"{c['forecast']}; resets {_when(c['resets_at'])}" + (
            "" if c["on_exceed"] == "block" else "; alerts only"
        )
        items.append(
            f"<div><b class=name>{escape(head)}</b>{charts.gauge(c['used'])}<small>{escape(tail)}</small></div>"
        )
    more = f"<small>and {len(ranked) - CAPS_SHOWN} more caps</small>" if len(ranked) > CAPS_SHOWN else ""
    return f'<section><h2>Budgets</h2><div class="caps">{"".join(items)}{more}</div></section>'


def _when(iso: str | None) -> str:
    return "-" if not iso else iso[:16].replace("T", " ")


def _chart(spend: Mapping[str, Any]) -> str:
    days = spend["days"]
    series = [(_short(name, 32), values) for name, values in charts.top_series(spend["workflows"])]
    first, last = (date.fromisoformat(days[i]) for i in (0, -1))
    title = f"Spend per day, {first:%b} {first.day} to {last:%b} {last.day}"
    return f"<section><h2>{escape(title)}</h2>{charts.daily_bars(days, series, title)}{charts.legend(series)}</section>"


def _workflows(view: View, budget: int) -> str:
    """Paused workflows first, then the biggest spenders this month, as many as `budget` bytes hold."""
    s, spend = view.status, view.spend
    paused = {p["workflow"]: p["until"] for p in s["pauses"]}
    month, daily, caps = spend["month"], spend["workflows"], _by_scope(s["budgets"])
    order = sorted(set(view.workflows) | paused.keys(), key=lambda n: (n not in paused, -month.get(n, 0.0), n))
    if not order:
        return _empty("Workflows", "No calls yet.", wide=True)
    rows, size = [], 0
    for name in order:
        row = _workflow_row(name, caps, (daily.get(name) or [0.0])[-1], month.get(name, 0.0), paused)
        size += len(row.encode())
        if size > budget:
            break
        rows.append(row)
    left = len(order) - len(rows)
    more = f"<p><small>and {left} more, with less spend this month</small></p>" if left else ""
    return (
        '<section class="wide"><h2>Workflows</h2><form method="post" action="/-/ui/pause">'
        f'{_csrf(view.csrf)}<div class="scroll"><table class="wf"><thead><tr><th>Workflow</th><th class="n">Today</th>'
        f'<th class="n">This month</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></form>'
        f"{more}</section>"
    )


def _workflow_row(
    name: str,
    caps: Mapping[tuple[str, str], Mapping[str, Any]],
    today: float,
    month: float,
    paused: Mapping[str, str | None],
) -> str:
    """Its spend today and this month (against its caps, exact to the last call), and its button."""
    cells = []
    for period, spent in (("day", today), ("month", month)):
        cap = caps.get((f"workflow:{name}", period))
        if cap is None:
            cells.append(f'<td class="n">{escape(money(spent))}</td>')
            continue
        level = "over" if (cap["used"] or 0) >= 1 else "warn" if (cap["used"] or 0) >= 0.8 else ""
        held, limit = escape(money(cap["spent_usd"])), escape(money(cap["limit_usd"]))
        cells.append(f'<td class="n {level}">{held} <small>of {limit}</small></td>')
    value, shown = escape(name), escape(_short(name))
    if name in paused:
        until = paused[name]
        tag = f'<span class="tag paused">paused {"until " + escape(_when(until)) if until else "until resumed"}</span>'
        button = f'<button class="go" name="workflow" value="{value}" formaction="/-/ui/resume">Resume</button>'
    else:
        tag, button = "", f'<button name="workflow" value="{value}">Pause</button>'
    return f'<tr><td class="name">{shown} {tag}</td>{"".join(cells)}<td class="n">{button}</td></tr>'


def _objectives(objectives: Sequence[Mapping[str, Any]]) -> str:
    """The workflows with the least error budget left first, each objective on a line."""
    if not objectives:
        return _empty("Objectives", "None set: [workflows.NAME] slo_target sets one.")
    items = []
    for o in sorted(objectives, key=_least_left)[:OBJECTIVES_SHOWN]:
        lines = "".join(_objective_line(o, sli) for sli in ("success", "latency") if sli in o)
        items.append(f'<li><b class="name">{escape(_short(o["workflow"]))}</b>{lines}</li>')
    more = len(objectives) - OBJECTIVES_SHOWN
    tail = f"<small>and {more} more with budget to spare</small>" if more > 0 else ""
    return f'<section><h2>Objectives, 28 days</h2><ul class="list">{"".join(items)}</ul>{tail}</section>'


def _least_left(objective: Mapping[str, Any]) -> float:
    return min((objective[k]["budget_left"] for k in ("success", "latency") if k in objective), default=1.0)


def _objective_line(o: Mapping[str, Any], sli: str) -> str:
    d = o[sli]
    goal = f"{o['target']:.2%} " + ("succeed" if sli == "success" else f"within {o['latency_s']:g} s")
    good = "no calls yet" if d["good_ratio"] is None else f"{d['good_ratio']:.2%} of {count(d['events'])}"
    text = f"{goal}: {good}, {budget_words(d['budget_left'])}"
    burning = f' <span class="tag bad">burning {escape(", ".join(d["burning"]))}</span>' if d["burning"] else ""
    return f"<br><small>{escape(text)}</small>{burning}"


def _canary(probes: Sequence[Mapping[str, Any]]) -> str:
    if not probes:
        return _empty("Canary", "No probes: [[canary.probes]] adds one.")
    items = []
    for p in probes[:20]:
        last = p["last"]
        if last is None:
            tag, text = '<span class="tag">not run yet</span>', ""
        else:
            look = {"pass": "ok", "fail": "bad"}.get(last["outcome"], "")
            tag = f'<span class="tag {look}">{escape(str(last["outcome"]))}</span>'
            text = f"{_when(last['at'])}: {last['detail']}"
            if p["failures_in_a_row"]:
                text += f" ({p['failures_in_a_row']} failures in a row)"
        items.append(f'<li><b class="name">{escape(_short(p["probe"]))}</b> {tag} <small>{escape(text)}</small></li>')
    return f'<section><h2>Canary</h2><ul class="list">{"".join(items)}</ul></section>'


def _alerts(alerts: Sequence[Mapping[str, Any]], csrf: str) -> str:
    if not alerts:
        return _empty("Recent alerts", "None since picometer started.")
    items = []
    for a in list(reversed(alerts))[:ALERTS_SHOWN]:
        text = a["message"] if len(a["message"]) <= MESSAGE_CHARS else a["message"][: MESSAGE_CHARS - 1] + "…"
        target = escape(f"{a['kind']}@{a['scope']}")
        items.append(
            f'<li><span class="tag {escape(a["severity"])}">{escape(a["kind"])}</span> <small>{escape(_when(a["at"]))}'
            f'</small> {escape(text)} <button name=alert value="{target}">Mute 24h</button></li>'
        )
    return (
        f'<section><h2>Recent alerts</h2><form method="post" action="/-/ui/mute">{_csrf(csrf)}'
        f'<ul class="list">{"".join(items)}</ul></form></section>'
    )


def _calls(calls: Sequence[Mapping[str, Any]]) -> str:
    if not calls:
        return _empty("Recent calls", "None since picometer started.", wide=True)
    rows = []
    for c in calls:
        cost = "unpriced" if c["cost_usd"] is None else money(c["cost_usd"])
        bad = "" if c["status"] == "ok" else ' class="over"'
        status, took = f"{c['status']} {c['http_status']}", f"{c['latency_ms']:,.0f} ms"
        rows.append(
            f'<tr><td>{escape(c["at"])}</td><td class="name">{escape(_short(c["workflow"]))}</td>'
            f'<td class="name">{escape(_short(c["model"]))}</td><td{bad}>{escape(status)}</td>'
            f'<td class="n">{escape(cost)}</td><td class="n">{escape(took)}</td></tr>'
        )
    return (
        '<section class="wide"><h2>Recent calls</h2><div class="scroll"><table><thead><tr><th>At</th>'
        '<th>Workflow</th><th>Model</th><th>Status</th><th class="n">Cost</th><th class="n">Time</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )
