"""The page (GET /-/ui): what it shows (every name as text, never markup), that it stays under 100 KB, and who may
use it: loopback clients without an admin token, everyone else after a login with it; every form needs its CSRF
token. The HTTP tests run against the real daemon on a loopback port."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from picometer.alert import Alert, Kind
from picometer.gateway.origin import loopback_host
from picometer.metering.budget import Cap, cap_status, to_pico
from picometer.page import charts, render
from picometer.page.serve import FORM_LIMIT
from picometer.page.session import MAX_SESSIONS, SESSION_S, Sessions, cookie
from picometer.watch import slo
from tests.clocks import ManualClock
from tests.patience import patience
from tests.servers import GatewayServer, SimServer, gateway_config

HOSTILE = "<script>alert(1)</script>💸"
QUOTE = 'q" onmouseover="alert(2)'
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ZONE = ZoneInfo("Europe/Berlin")


class Parsed(HTMLParser):
    """The tags, attributes and text of a page, as a browser's parser splits them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def buttons(self) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == "button"]


def assert_inert(html: str) -> Parsed:
    """No script, no event handler, nothing loaded from elsewhere: whatever the data held."""
    page = Parsed(html)
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "object", "embed", "img")]
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
    assert not re.search(r"(src|href)=\"?(https?:)?//", html)
    return page


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "the page's forms carry a CSRF token"
    return found[1]


def call(url: str, workflow: str) -> httpx.Response:
    headers = {"x-picometer-workflow": workflow.encode()}
    return httpx.post(f"{url}/openai/chat/completions", json=CHAT, headers=headers, trust_env=False, timeout=10)


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, trust_env=False, follow_redirects=False, timeout=10)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + patience(timeout)
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return got


# ---------------------------------------------------------------- plain data in, HTML out


def view_of(names: list[str], alerts: int = 10, paused: tuple[str, ...] = ()) -> render.View:
    """What the operations would answer for these workflows, each with a day and a month cap, a call today and
    objectives, built with the same functions the daemon uses."""
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    days = [(date(2026, 11, 10) + timedelta(days=i)).isoformat() for i in range(14)]
    caps = [
        cap_status(Cap(f"workflow:{n}", period, to_pico(2.0), True), date(2026, 11, 23), to_pico(1.7), 0, 0, now, ZONE)
        for n in names
        for period in ("day", "month")
    ]
    caps += [cap_status(Cap("global", "day", to_pico(10.0), True), date(2026, 11, 23), to_pico(3.0), 0, 0, now, ZONE)]
    objectives = [slo.objective(n, 0.99, 5.0, (slo.Events(100, 3), slo.Events(100, 1))) for n in names]
    told = [
        Alert(Kind.SPIKE, f"k{i}", f"{names[i % len(names)]} spent {i} times its usual hour. " * 20, now,
              f"workflow:{names[i % len(names)]}").as_dict(ZONE)
        for i in range(alerts)
    ]  # fmt: skip
    calls = [
        {"at": "12:00:00", "workflow": n, "model": "openai/gpt-4o-mini", "status": "ok", "http_status": 200,
         "cost_usd": 0.0012, "latency_ms": 840.0}
        for n in names[:20]
    ]  # fmt: skip
    status = {
        "version": "0.1.0",
        "uptime_s": 7300.0,
        "requests": 4000,
        "requests_by_status": {"ok": 3990, "blocked": 10},
        "spend_usd": {"today": 3.0, "month": 41.5},
        "budgets": caps,
        "pauses": [{"workflow": n, "until": None, "by": "page"} for n in paused],
        "alerts": told,
        "canary": {"probes": [{"probe": "openai-mini", "failures_in_a_row": 0, "last": None}]},
        "objectives": objectives,
    }
    spend = {
        "days": days,
        "workflows": {n: [0.01 * (i % 7 + 1)] * 14 for i, n in enumerate(names)},
        "month": {n: 1.7 for n in names},
    }
    return render.View(status, spend, names, calls, "ab" * 32, logged_in=True, now="2026-11-23 13:00:00 CET")


def test_two_hundred_workflows_fit_in_100_kb_each_with_its_button() -> None:
    names = [f"workflow-{i:03d}-nightly-digest" for i in range(200)]
    html = render.page(view_of(names))
    assert len(html.encode()) <= 100_000
    page = assert_inert(html)
    assert {b["value"] for b in page.buttons() if b.get("name") == "workflow"} == set(names)
    assert "more, with less spend" not in html
    assert "<svg" in html and "<rect" in html


def test_the_page_stays_under_100_kb_whatever_the_names_hold() -> None:
    names = [f"{i:03d}" + "💸" * 253 for i in range(200)]  # the longest names the gateway lets through
    html = render.page(view_of(names, alerts=50, paused=(names[150],)))
    assert len(html.encode()) <= 100_000
    page = assert_inert(html)
    shown = [b["value"] for b in page.buttons() if b.get("name") == "workflow"]
    assert 0 < len(shown) < 200 and f"and {200 - len(shown)} more, with less spend this month" in page.text
    assert shown[0] == names[150], "a paused workflow comes first, so it can always be resumed"


def test_data_is_text_in_every_part_of_the_page() -> None:
    names = [HOSTILE, QUOTE, "plain"]
    html = render.page(view_of(names, alerts=3, paused=(QUOTE,)))
    page = assert_inert(html)
    assert HOSTILE in page.text and "<script>" not in html
    assert {b["value"] for b in page.buttons() if b.get("name") == "workflow"} == set(names)
    assert f"spike@workflow:{HOSTILE}" in {b["value"] for b in page.buttons() if b.get("name") == "alert"}
    [resume] = [b for b in page.buttons() if b.get("value") == QUOTE]
    assert resume["formaction"] == "/-/ui/resume", "a paused workflow's button resumes it"


def test_the_chart_stacks_each_workflow_in_proportion() -> None:
    days = ["2026-11-22", "2026-11-23"]
    svg = charts.daily_bars(days, [("a", [1.0, 0.5]), ("b", [1.0, 0.0])], "spend")
    heights = [float(h) for h in re.findall(r'<rect class="c\d" [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 3, "no piece for a day without spend"
    assert heights[0] == pytest.approx(heights[1]) == pytest.approx(2 * heights[2], abs=0.1)
    assert "<title>2026-11-22 a: $1.00</title>" in svg
    assert "no spend on these days" in charts.daily_bars(days, [], "spend")


def test_the_chart_names_the_top_five_and_sums_the_rest() -> None:
    by_name = {f"w{i}": [float(i), 1.0] for i in range(8)}
    series = charts.top_series(by_name)
    assert [name for name, _ in series] == ["w7", "w6", "w5", "w4", "w3", charts.REST]
    assert series[-1][1] == [0.0 + 1 + 2, 3.0]
    assert [charts.nice_ceiling(v) for v in (0, 0.7, 1, 1.2, 2.2, 3, 7, 0.00042)] == pytest.approx(
        [1, 1, 1, 2, 2.5, 5, 10, 0.0005]
    )


# ---------------------------------------------------------------- sessions and CSRF, pure


def test_a_session_is_a_random_id_that_expires() -> None:
    clock = ManualClock()
    sessions = Sessions(clock)
    assert sessions.login("wrong", "the-admin-token") is None
    sid = sessions.login("the-admin-token", "the-admin-token")
    assert sid and "the-admin-token" not in sid and sessions.valid(sid, "the-admin-token")
    assert not sessions.valid(sid + "x", "the-admin-token") and not sessions.valid(None, "the-admin-token")
    assert not sessions.valid(sid, "a-new-token"), "a reload with a new admin token ends the sessions"
    clock.advance(SESSION_S + 1)
    assert not sessions.valid(sid, "the-admin-token")


def test_sessions_are_bounded_and_each_has_its_own_csrf_token() -> None:
    sessions = Sessions(ManualClock())
    sids = [sessions.login("t", "t") for _ in range(MAX_SESSIONS + 5)]
    assert [s for s in sids if s is not None and sessions.valid(s, "t")] == sids[5:]
    a, b = str(sids[-1]), str(sids[-2])
    assert sessions.csrf_ok(a, sessions.csrf(a)) and not sessions.csrf_ok(a, sessions.csrf(b))
    assert not sessions.csrf_ok(a, "") and Sessions(ManualClock()).csrf(a) != sessions.csrf(a)
    sessions.logout(a)
    assert not sessions.valid(a, "t")


def test_cookies_and_host_names_are_read_strictly() -> None:
    assert cookie("a=1; picometer_ui=abc; b=2") == "abc"
    assert cookie("xpicometer_ui=abc") is None and cookie(None) is None
    for host in ("127.0.0.1:8787", "localhost:8787", "[::1]:8787", "[::1]", "127.0.0.1", "localhost", None):
        assert loopback_host(host), host
    for host in (
        "evil.example:8787",
        "pi.local",
        "192.168.1.20:8787",
        "127.0.0.1.evil.example",
        "localhost:1.evil",
        "[::1]x",
    ):
        assert not loopback_host(host), host


# ---------------------------------------------------------------- the real daemon


@pytest.fixture
def daemon(sim: SimServer, tmp_path: Path) -> Iterator[GatewayServer]:
    raw = gateway_config(
        sim.url,
        tmp_path,
        budgets={"daily_usd": 5.0, "monthly_usd": 50.0},
        workflows={HOSTILE: {"daily_usd": 1.0, "slo_target": 0.99}, "garden": {"monthly_usd": 3.0}},
    )
    with GatewayServer(raw) as gw:
        yield gw


def test_loopback_without_a_token_sees_the_page_with_strict_headers(daemon: GatewayServer) -> None:
    assert call(daemon.url, HOSTILE).status_code == 200 and call(daemon.url, "news").status_code == 200
    with client(daemon.url) as c:
        r = c.get("/-/ui")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    page = assert_inert(r.text)
    assert HOSTILE in page.text and "<script>alert" not in r.text
    assert {"garden", "news", HOSTILE} <= {b["value"] for b in page.buttons() if b.get("name") == "workflow"}
    assert "of $1.00" in page.text and "global/day" in page.text, "spend against each cap"
    assert "<svg" in r.text and "Spend per day" in page.text
    assert page.text.count("openai/gpt-4o-mini") == 2, "the recent calls"


def test_pause_and_resume_buttons_switch_the_workflow(daemon: GatewayServer) -> None:
    assert call(daemon.url, "garden").status_code == 200
    with client(daemon.url) as c:
        token = csrf_of(c.get("/-/ui").text)
        r = c.post("/-/ui/pause", data={"workflow": "garden", "csrf": token})
        assert r.status_code == 303 and r.headers["location"] == "/-/ui"
        refused = call(daemon.url, "garden")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "workflow_paused"
        page = Parsed(c.get("/-/ui").text)
        assert "paused garden until resumed" in page.text and "paused until resumed" in page.text
        assert c.post("/-/ui/resume", data={"workflow": "garden", "csrf": token}).status_code == 303
        assert "resumed garden" in Parsed(c.get("/-/ui").text).text
        assert call(daemon.url, "garden").status_code == 200
        typo = c.post("/-/ui/pause", data={"workflow": "gardn", "csrf": token})
        assert typo.status_code == 303 and "Did you mean 'garden'" in Parsed(c.get("/-/ui").text).text
    assert daemon.daemon.state.pauses(datetime.now(UTC)) == []


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(daemon: GatewayServer) -> None:
    assert call(daemon.url, "garden").status_code == 200
    with client(daemon.url) as c:
        assert c.post("/-/ui/pause", data={"workflow": "garden"}).status_code == 403
        assert c.post("/-/ui/pause", data={"workflow": "garden", "csrf": "0" * 64}).status_code == 403
        big = c.post("/-/ui/pause", data={"workflow": "g" * FORM_LIMIT, "csrf": "0" * 64})
        assert big.status_code == 413
        assert c.get("/-/ui/pause").status_code == 405
    assert call(daemon.url, "garden").status_code == 200


def test_without_a_token_a_lan_client_or_a_foreign_host_name_sees_nothing(daemon: GatewayServer) -> None:
    assert call(daemon.url, "garden").status_code == 200

    async def get(ip: str, base: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=daemon.daemon.gateway, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=base) as c:
            return await c.get("/-/ui")

    for ip, base in (("192.168.1.20", "http://127.0.0.1:8787"), ("127.0.0.1", "http://rebound.example:8787")):
        r = asyncio.run(get(ip, base))
        assert r.status_code == 403 and "garden" not in r.text and "admin_token" in r.text


def test_the_mute_button_mutes_that_kind_of_alert_for_its_workflow(sim: SimServer, tmp_path: Path) -> None:
    tiny = {"daily_usd": 0.00001, "on_exceed": "alert", "alert_at": [0.5]}
    with GatewayServer(gateway_config(sim.url, tmp_path, workflows={"garden": tiny})) as gw, client(gw.url) as c:
        assert call(gw.url, "garden").status_code == 200
        html = wait_for(lambda: next((t for t in [c.get("/-/ui").text] if "Mute 24h" in t), None), "the alert")
        button = next(b for b in Parsed(html).buttons() if b.get("name") == "alert")
        assert button["value"] == "budget_threshold@workflow:garden"
        assert c.post("/-/ui/mute", data={"alert": button["value"], "csrf": csrf_of(html)}).status_code == 303
        now = datetime.now(UTC)
        until = gw.daemon.outbox.muted("budget_threshold", "workflow:garden", now)
        assert until is not None and timedelta(hours=23) < until - now <= timedelta(hours=24)
        assert "budget_threshold alerts for workflow:garden muted for 1d 0h" in Parsed(c.get("/-/ui").text).text
        c.post("/-/ui/mute", data={"alert": "nonsense@x", "csrf": csrf_of(html)})
        assert "'nonsense' is not an alert kind" in Parsed(c.get("/-/ui").text).text


ADMIN = "admin-token-for-the-page-tests"


def test_with_an_admin_token_nothing_shows_before_a_login(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(env={"PM_ADMIN": ADMIN}, server={"admin_token": "env:PM_ADMIN"})
    assert call(gw.url, "garden").status_code == 200
    with client(gw.url) as c:
        form = c.get("/-/ui")
        assert form.status_code == 200 and "garden" not in form.text and 'action="/-/ui/login"' in form.text
        assert c.post("/-/ui/pause", data={"workflow": "garden"}).status_code == 403, "no session, no action"
        wrong = c.post("/-/ui/login", data={"token": ADMIN + "x"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers and "garden" not in wrong.text
        assert "That is not the admin token" in wrong.text
        right = c.post("/-/ui/login", data={"token": ADMIN})
        assert right.status_code == 303 and right.headers["location"] == "/-/ui"
        flags = [f.strip() for f in right.headers["set-cookie"].split(";")]
        assert {"HttpOnly", "SameSite=Strict", "Path=/-/ui"} <= set(flags)
        assert ADMIN not in right.headers["set-cookie"]
        page = c.get("/-/ui")
        assert page.status_code == 200 and "garden" in Parsed(page.text).text
        token = csrf_of(page.text)
        assert c.post("/-/ui/pause", data={"workflow": "garden"}).status_code == 403
        assert call(gw.url, "garden").status_code == 200
        assert c.post("/-/ui/pause", data={"workflow": "garden", "csrf": token}).status_code == 303
        assert call(gw.url, "garden").status_code == 429
        assert c.post("/-/ui/logout", data={"csrf": token}).headers["set-cookie"].startswith("picometer_ui=;")
        old = right.headers["set-cookie"].split(";")[0]
        after = httpx.get(f"{gw.url}/-/ui", headers={"cookie": old}, trust_env=False)
        assert "garden" not in after.text and 'action="/-/ui/login"' in after.text, "logged out for good"


def test_with_an_admin_token_a_lan_client_can_log_in(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(env={"PM_ADMIN": ADMIN}, server={"admin_token": "env:PM_ADMIN"})

    async def visit() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=gw.daemon.gateway, client=("192.168.1.20", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://pi.local:8787") as c:
            await c.post("/-/ui/login", data={"token": ADMIN})
            page = await c.get("/-/ui")
        async with httpx.AsyncClient(transport=transport, base_url="http://pi.local:8787") as c:
            return page, await c.get("/-/ui", headers={"cookie": "picometer_ui=forged"})

    page, forged = asyncio.run(visit())
    assert page.status_code == 200 and "Spend per day" in page.text
    assert 'action="/-/ui/login"' in forged.text and "Spend per day" not in forged.text


def test_each_call_counts_on_its_own_local_day(sim: SimServer, tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 22, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    raw = gateway_config(sim.url, tmp_path, budgets={"timezone": "Europe/Berlin"})
    with GatewayServer(raw, clock=clock) as gw:
        assert call(gw.url, "garden").status_code == 200
        clock.advance(3600)  # 00:30 on the 23rd in Berlin
        assert call(gw.url, "garden").status_code == 200
        assert call(gw.url, "news").status_code == 200
        gw.records(3)
        spend = asyncio.run(gw.daemon.ops.daily_spend(14))
    assert spend["days"][-2:] == ["2026-11-22", "2026-11-23"]
    garden, news = spend["workflows"]["garden"], spend["workflows"]["news"]
    assert garden[-2] > 0 and garden[-1] == pytest.approx(garden[-2]) and news[-2] == 0 < news[-1]
    assert spend["month"]["garden"] == pytest.approx(garden[-2] + garden[-1])
