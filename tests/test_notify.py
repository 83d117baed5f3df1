"""Alerts on ntfy, Gotify, Discord and a signed webhook: what each service is sent (its documented API, the
severity mapped to its priority), what its answers mean, and end to end with the real daemon and loopback fakes
of each service: once, in order, through outages, rate limits and a restart."""

from __future__ import annotations

import asyncio
import email.header
import hashlib
import hmac
import json
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from structlog.testing import capture_logs

from picometer.alert import Alert, Kind, Severity
from picometer.config import config_from_dict, keep_for_restart, restart_needed, with_secrets
from picometer.daemon import Daemon
from picometer.notify import discord, gotify, ntfy, webhook
from picometer.notify.delivery import PARK_S, Channel, Delivery
from picometer.notify.note import CUT, Address, Note, note_for, utf16_units, wants
from picometer.notify.verdict import BACKOFF_MAX_S, WAIT_MAX_S, backoff_s, judge, retry_after_s
from picometer.numbers import money
from picometer.reports.status_text import status_lines
from picometer.store.outbox import Outbox
from picometer.watch.alerts import OVER_AFTER_S
from tests.clocks import ManualClock
from tests.patience import patience
from tests.receivers import Receiver, discord_rate_limited, too_many
from tests.servers import SimServer, daemon_process, free_port, gateway_config

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
NTFY_TOKEN, GOTIFY_TOKEN, WEBHOOK_SECRET = "tk_ntfy4picometer", "AgotifyAppTok3n", "whsec-picometer-42"
SERVICES = ("ntfy", "gotify", "discord", "webhook")
CAP = 0.0005


def note(message: str = "Workflow digest spent $3.00", kind: Kind = Kind.SPIKE, **amounts: Any) -> Note:
    alert = Alert(kind, f"{kind}:workflow:digest", message, T0, "workflow:digest")
    return note_for(alert, BERLIN, amounts=amounts or None)


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What the README tells a receiver to do."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# ---------------------------------------------------------------- what each service is sent


def test_min_severity_lets_through_its_level_and_above() -> None:
    table = {(m, s): wants(m, s) for m in ("info", "warning", "critical") for s in Severity}
    assert [s for s in Severity if table["info", s]] == list(Severity)
    assert {s for s in Severity if table["warning", s]} == {Severity.WARNING, Severity.CRITICAL}
    assert {s for s in Severity if table["critical", s]} == {Severity.CRITICAL}


@pytest.mark.parametrize(
    ("kind", "priority", "tag", "gotify_priority"),
    [
        (Kind.BUDGET_BLOCKED, "5", "rotating_light", 8),  # ntfy urgent; Gotify: sound and vibration
        (Kind.BUDGET_THRESHOLD, "4", "warning", 5),  # ntfy high; Gotify: sound
        (Kind.CANARY_RECOVERED, "3", "information_source", 2),  # ntfy default; Gotify: an icon only
    ],
)
def test_severity_maps_to_each_services_own_priority(kind: Kind, priority: str, tag: str, gotify_priority: int) -> None:
    n = note(kind=kind)
    sent = ntfy.post(n, Address("https://ntfy.example/alerts", NTFY_TOKEN), 1)
    assert sent.headers["Priority"] == priority and sent.headers["Tags"] == f"{tag},{kind}"
    body = json.loads(gotify.post(n, Address("https://push.example", GOTIFY_TOKEN), 1).body)
    assert body["priority"] == gotify_priority


def test_ntfy_gets_the_text_as_body_the_token_as_bearer_and_a_title_it_can_read() -> None:
    n = note("Workflow ünïcode 🚀 spent $3.00")
    sent = ntfy.post(n, Address("https://ntfy.example/alerts", NTFY_TOKEN), 1)
    assert sent.url == "https://ntfy.example/alerts"
    assert sent.headers["Authorization"] == f"Bearer {NTFY_TOKEN}"
    assert sent.body.decode().startswith("Workflow ünïcode 🚀 spent $3.00\nwarning · Mon 23 Nov 13:00 CET")
    title = sent.headers["Title"]
    assert title.isascii(), "every HTTP client can send it"
    assert str(email.header.make_header(email.header.decode_header(title))) == "spike · workflow:digest"
    assert "Authorization" not in ntfy.post(n, Address("https://ntfy.example/alerts"), 1).headers
    long = ntfy.post(note("é" * 5000), Address("https://ntfy.example/alerts"), 1).body
    assert len(long) <= ntfy.MESSAGE_BYTES and long.decode().endswith(CUT), "no attachment, cut visibly"


def test_gotify_gets_json_at_its_message_route_with_the_token_in_a_header_never_the_url() -> None:
    sent = gotify.post(note(), Address("https://push.example/gotify/", GOTIFY_TOKEN), 7)
    assert sent.url == "https://push.example/gotify/message"
    assert sent.headers["X-Gotify-Key"] == GOTIFY_TOKEN and GOTIFY_TOKEN not in sent.url
    body = json.loads(sent.body)
    assert body["title"] == "spike · workflow:digest" and body["message"].startswith("Workflow digest spent $3.00")


def test_discord_content_stays_under_2000_characters_as_discord_counts_and_pings_nobody() -> None:
    long = note("🚀 @everyone " * 400)
    body = json.loads(discord.post(long, Address("https://discord.example/api/webhooks/1/t"), 1).body)
    assert utf16_units(body["content"]) <= 2000 and body["content"].endswith(CUT)
    assert body["allowed_mentions"] == {"parse": []}
    short = json.loads(discord.post(note("workflow daily_digest_v2"), Address("https://d.example"), 1).body)
    assert short["content"].startswith("⚠️ **spike · workflow:digest**\n")
    assert "daily\\_digest\\_v2" in short["content"], "shown as written, not in italics"
    link = json.loads(
        discord.post(note("workflow [login](https://evil.example)"), Address("https://d.example"), 1).body
    )
    assert "\\[login\\]\\(https://evil.example\\)" in link["content"], "a name never becomes a disguised link"


def test_the_webhook_gets_the_alerts_fields_signed_over_the_raw_body() -> None:
    n = note("the daily cap is 80% used", Kind.BUDGET_THRESHOLD, period="day", spent_usd=0.0004, limit_usd=0.0005)
    sent = webhook.post(n, Address("https://hooks.example/pm", WEBHOOK_SECRET), 42)
    assert sent.headers["Content-Type"] == "application/json"
    assert verify(WEBHOOK_SECRET, sent.body, sent.headers["X-Picometer-Signature"])
    assert not verify("another secret", sent.body, sent.headers["X-Picometer-Signature"])
    data = json.loads(sent.body)
    assert data["id"] == 42 and data["kind"] == "budget_threshold" and data["severity"] == "warning"
    assert data["workflow"] == "digest" and data["scope"] == "workflow:digest"
    assert data["amounts"] == {"period": "day", "spent_usd": 0.0004, "limit_usd": 0.0005}
    assert data["ts"] == "2026-11-23T12:00:00.000Z" and data["message"] == "the daily cap is 80% used"
    unsigned = webhook.post(n, Address("https://hooks.example/pm"), 42)
    assert "X-Picometer-Signature" not in unsigned.headers


def test_a_note_survives_the_outbox_as_json_and_never_shows_its_secrets() -> None:
    n = note("ünïcode 🚀", Kind.BUDGET_THRESHOLD, period="day", spent_usd=0.1, limit_usd=0.2, threshold=0.5)
    assert Note.loads(n.dumps()) == n
    assert "tok" not in repr(Address("https://x.example/tok", "tok")) and "tok" not in repr(
        ntfy.post(n, Address("https://x/tok", "tok"), 1)
    )


# ---------------------------------------------------------------- what the answers mean


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        *[(200, "sent"), (204, "sent")],
        *[(503, "retry"), (500, "retry"), (408, "retry"), (429, "retry")],  # 429 without a wait: backoff
        *[(401, "park"), (403, "park"), (404, "park"), (410, "park"), (301, "park")],
        *[(400, "drop"), (413, "drop"), (422, "drop")],
    ],
)
def test_each_answer_has_one_meaning(status: int, outcome: str) -> None:
    assert judge(status, {}, b"", T0).outcome == outcome


def test_the_wait_a_service_asks_for_is_read_from_the_header_or_discords_body() -> None:
    later = format_datetime(T0 + timedelta(seconds=30), usegmt=True)
    assert retry_after_s({"retry-after": "7"}, b"", T0) == 7.0
    assert retry_after_s({"retry-after": later}, b"", T0) == 30.0
    assert retry_after_s({}, b'{"message": "You are being rate limited.", "retry_after": 1.337}', T0) == 1.337
    assert retry_after_s({"retry-after": "2"}, b'{"retry_after": 1.5}', T0) == 2.0, "the longer of the two"
    assert retry_after_s({"retry-after": "86400"}, b"", T0) == WAIT_MAX_S
    assert retry_after_s({"retry-after": "soon"}, b"<html>", T0) is None
    assert judge(429, {"retry-after": "3"}, b"", T0).wait_s == 3.0
    assert judge(503, {"retry-after": "3"}, b"", T0).outcome == "wait"


def test_backoff_grows_is_bounded_and_jittered_but_never_hot() -> None:
    for failures in range(30):
        low, high = backoff_s(failures, 0.0), backoff_s(failures, 0.999999)
        assert 0.5 <= low < high <= BACKOFF_MAX_S and low >= high / 2 - 1e-6
    assert backoff_s(1, 0.5) > backoff_s(0, 0.5)


# ---------------------------------------------------------------- one channel's queue against a real receiver


def deliver(channel: Channel, outbox: Outbox, steps: int) -> tuple[list[float | None], list[dict[str, Any]]]:
    """`steps` deliveries of the channel's queue, each's wait, and the log lines they wrote."""

    async def go() -> list[float | None]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            delivery = Delivery(channel, outbox, ManualClock(T0), client, rand=lambda: 0.0)
            return [await delivery.deliver_next() for _ in range(steps)]

    with capture_logs() as lines:
        waits = asyncio.run(go())
    return waits, lines


def test_a_refused_token_parks_the_channel_with_one_actionable_line_and_keeps_its_alerts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    for message in ("first", "second"):
        outbox.put_for(("gotify",), "spike", 2, note(message).dumps(), T0, T0)
    with Receiver("gotify", token=GOTIFY_TOKEN) as fake:
        channel = Channel("gotify", "info", Address(fake.url, "a-wrong-token"), gotify.post, gotify.FIX)
        waits, lines = deliver(channel, outbox, 2)
    assert waits == [PARK_S, PARK_S], "tried again only after a long pause: no hot loop"
    assert [r.status for r in fake.requests] == [401, 401]
    assert outbox.pending("gotify") == 2, "nothing lost: they go once the token is fixed"
    (error,) = [line for line in lines if line["log_level"] == "error"]
    assert "gotify" in error["event"] and "[notify.gotify].token" in error["event"]
    assert "a-wrong-token" not in str(lines)


def test_a_message_the_service_refuses_as_it_is_is_dropped_and_the_next_goes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    for message in ("first", "second"):
        outbox.put_for(("gotify",), "spike", 2, note(message).dumps(), T0, T0)
    with Receiver("gotify", token=GOTIFY_TOKEN) as fake:
        fake.script.append((400, {"content-type": "application/json"}, b'{"error":"Bad Request","errorCode":400}'))
        channel = Channel("gotify", "info", Address(fake.url, GOTIFY_TOKEN), gotify.post, gotify.FIX)
        waits, lines = deliver(channel, outbox, 3)
    assert waits == [0.0, 0.0, None]
    assert [t.json()["message"].split("\n")[0] for t in fake.taken()] == ["second"]
    assert any(line["log_level"] == "error" and "HTTP 400" in line["event"] for line in lines)


def test_an_unreachable_service_is_retried_with_growing_waits_and_the_message_kept(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.put_for(("webhook",), "spike", 2, note().dumps(), T0, T0)
    nobody = Address(f"http://127.0.0.1:{free_port()}/hooks", WEBHOOK_SECRET)
    waits, lines = deliver(Channel("webhook", "info", nobody, webhook.post, webhook.FIX), outbox, 4)
    assert waits == [backoff_s(n, 0.0) for n in range(4)] and waits == sorted(waits)
    assert outbox.pending("webhook") == 1
    assert WEBHOOK_SECRET not in str(lines)


def test_a_service_asking_for_no_wait_gets_a_backoff_not_a_hot_loop(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.put_for(("ntfy",), "spike", 2, note().dumps(), T0, T0)
    with Receiver("ntfy") as fake:
        fake.script.extend([too_many(0), too_many(0), too_many(0)])  # "Retry-After: 0", again and again
        channel = Channel("ntfy", "info", Address(f"{fake.url}/alerts", ""), ntfy.post, ntfy.FIX)
        waits, _ = deliver(channel, outbox, 3)
    assert waits == [backoff_s(n, 0.0) for n in range(3)] and all(w is not None and w >= 0.5 for w in waits)
    assert outbox.pending("ntfy") == 1


def test_a_token_the_http_library_refuses_parks_the_channel_and_never_reaches_the_log(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.put_for(("ntfy",), "spike", 2, note().dumps(), T0, T0)
    secret = "tk_secret_token_123"
    with Receiver("ntfy") as fake:
        channel = Channel("ntfy", "info", Address(f"{fake.url}/alerts", secret + "\n"), ntfy.post, ntfy.FIX)
        waits, lines = deliver(channel, outbox, 1)
        assert fake.taken() == []
    assert waits == [PARK_S] and secret not in str(lines)


# ---------------------------------------------------------------- the outbox, the policy, reload


def test_each_channel_has_its_own_queue_beside_telegrams(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.put((111,), "spike", 2, "<b>for telegram</b>", (), T0, T0)
    outbox.put_for(("ntfy", "webhook"), "spike", 2, note("one").dumps(), T0, T0)
    outbox.put_for(("ntfy",), "spike", 2, note("two").dumps(), T0, T0)
    assert outbox.pending() == 1, "Telegram's count is Telegram's alone"
    assert (outbox.pending("ntfy"), outbox.pending("webhook")) == (2, 1)
    first = outbox.next_due(T0, "ntfy")
    assert first is not None and Note.loads(first.text).message == "one"
    telegram = outbox.next_due(T0)
    assert telegram is not None and telegram.text == "<b>for telegram</b>"
    assert outbox.keep_channels(("ntfy",)) == 1, "a channel switched off forgets its queue"
    assert (outbox.pending(), outbox.pending("ntfy"), outbox.pending("webhook")) == (1, 2, 0)


def daemon_for(tmp_path: Path, clock: ManualClock, **alerts: Any) -> Daemon:
    raw = gateway_config(
        "http://127.0.0.1:9",
        tmp_path,
        alerts=alerts,
        budgets={"timezone": "Europe/Berlin"},
        notify={"ntfy": {"url": "http://127.0.0.1:9/alerts"}},
    )
    return Daemon(with_secrets(config_from_dict(raw), {}), clock)


def test_quiet_hours_hold_a_channels_warning_until_morning_and_let_critical_through(tmp_path: Path) -> None:
    night = datetime(2026, 11, 23, 23, 30, tzinfo=BERLIN)
    daemon = daemon_for(tmp_path, ManualClock(night), quiet_hours="23:00-07:00")
    try:
        daemon.alert(Alert(Kind.SPIKE, "spike:workflow:digest", "spent $3", night, "workflow:digest"))
        assert daemon.outbox.pending("ntfy") == 1 and daemon.outbox.next_due(night, "ntfy") is None
        daemon.alert(Alert(Kind.RUNAWAY, "runaway:workflow:x", "running away", night, "workflow:x"))
        due = daemon.outbox.next_due(night, "ntfy")
        assert due is not None and due.kind == "runaway"
        daemon.outbox.done(due.id)
        morning = datetime(2026, 11, 24, 7, 0, tzinfo=BERLIN)
        assert daemon.outbox.next_time("ntfy") == morning.astimezone(UTC)
    finally:
        daemon.close()


def test_a_condition_that_passed_is_told_as_over_on_the_channels_too(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    daemon = daemon_for(tmp_path, clock)
    try:
        daemon.alert(Alert(Kind.SPIKE, "spike:workflow:digest", "spent $3", T0, "workflow:digest"))
        daemon.watch()
        clock.advance(OVER_AFTER_S + 60)
        daemon.watch()
        notes = []
        while (m := daemon.outbox.next_due(clock.now(), "ntfy")) is not None:
            notes.append(Note.loads(m.text))
            daemon.outbox.done(m.id)
    finally:
        daemon.close()
    assert [(n.kind, n.over) for n in notes] == [("spike", False), ("spike", True)]
    assert notes[1].title == "over: spike · workflow:digest" and "has passed" in notes[1].message


def test_channels_change_at_the_next_start_with_their_secrets() -> None:
    def load(url: str, token: str) -> Any:
        return with_secrets(config_from_dict({"notify": {"ntfy": {"url": url, "token": "env:T"}}}), {"T": token})

    old, new = load("https://ntfy.sh/old", "tk_old"), load("https://ntfy.sh/new", "tk_new")
    assert restart_needed(old, new) == ["notify.ntfy.url"]
    kept = keep_for_restart(old, new)
    assert kept.notify == old.notify and kept.secrets["notify.ntfy.token"].value == "tk_old"


# ---------------------------------------------------------------- end to end: the real daemon, loopback services


def call(url: str, content: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{url}/w/digest/openai/chat/completions", json=body, trust_env=False, timeout=30)


def used(url: str) -> float:
    caps = httpx.get(f"{url}/-/status", trust_env=False).json()["budgets"]
    return float(next(c["used"] for c in caps if c["scope"] == "workflow:digest" and c["period"] == "day"))


def fill_to(url: str, share: float) -> None:
    for i in range(2000):
        if used(url) >= share:
            return
        assert call(url, f"{share}-{i}").status_code == 200
    raise AssertionError(f"the cap was never {share:.0%} used")


def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + patience(timeout)
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def queued(tmp: Path) -> dict[str, int]:
    """Messages waiting per channel in the daemon's alerts.db, read as it is on disk."""
    db = sqlite3.connect(f"file:{tmp / 'data' / 'alerts.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT channel, COUNT(*) FROM message WHERE channel != 'telegram' GROUP BY channel")
        return dict(rows.fetchall())
    finally:
        db.close()


def secrets_env(discord_url: str) -> dict[str, str]:
    return {
        "PM_NTFY_TOKEN": NTFY_TOKEN,
        "PM_GOTIFY_TOKEN": GOTIFY_TOKEN,
        "PM_DISCORD_WEBHOOK": discord_url,
        "PM_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def notify_config(urls: dict[str, str], **min_severity: str) -> dict[str, Any]:
    channels = {
        "ntfy": {"url": urls.get("ntfy"), "token": "env:PM_NTFY_TOKEN"},
        "gotify": {"url": urls.get("gotify"), "token": "env:PM_GOTIFY_TOKEN"},
        "discord": {"webhook_url": "env:PM_DISCORD_WEBHOOK"},  # the URL is the secret
        "webhook": {"url": urls.get("webhook"), "secret": "env:PM_WEBHOOK_SECRET"},
    }
    return {name: {**c, "min_severity": min_severity.get(name, "info")} for name, c in channels.items() if name in urls}


@pytest.fixture
def services() -> Iterator[dict[str, Receiver]]:
    tokens = {"ntfy": NTFY_TOKEN, "gotify": GOTIFY_TOKEN}
    with (
        Receiver("ntfy", tokens["ntfy"]) as a,
        Receiver("gotify", tokens["gotify"]) as b,
        Receiver("discord") as c,
        Receiver("webhook") as d,
    ):
        yield {"ntfy": a, "gotify": b, "discord": c, "webhook": d}


def assert_no_secret_in(log: Path, discord_url: str) -> None:
    text = log.read_text()
    for secret in (NTFY_TOKEN, GOTIFY_TOKEN, WEBHOOK_SECRET, discord_url.rsplit("/", 1)[1]):
        assert secret not in text


def test_a_budget_alert_reaches_every_channel_once_with_the_workflow_and_amounts(
    sim: SimServer, services: dict[str, Receiver], tmp_path: Path
) -> None:
    urls = {name: r.url for name, r in services.items()}
    notify = notify_config(urls, gotify="critical")
    config = gateway_config(
        sim.url, tmp_path, workflows={"digest": {"daily_usd": CAP, "alert_at": [0.5]}}, notify=notify
    )
    with daemon_process(config, tmp_path, secrets_env(urls["discord"])) as (url, _):
        fill_to(url, 0.5)
        for name in ("ntfy", "discord", "webhook"):
            services[name].wait_taken(1, timeout=5)
        # The cap then refuses a call: critical, the one alert the critical-only Gotify is told.
        for i in range(2000):
            if call(url, f"past-{i}").status_code == 429:
                break
        (blocked,) = services["gotify"].wait_taken(1, timeout=5)
        for name in ("ntfy", "discord", "webhook"):
            services[name].wait_taken(2, timeout=5)
    cap = money(CAP)
    for name in ("ntfy", "discord", "webhook"):
        warnings = [t for t in services[name].texts() if "50% used" in t]
        assert len(warnings) == 1, f"{name} is told once: {services[name].texts()}"
        assert "workflow 'digest'" in warnings[0] and f"of {cap}" in warnings[0]
    first = services["ntfy"].taken()[0]
    assert first.title == "budget_threshold · workflow:digest"
    assert (first.headers["priority"], first.headers["tags"]) == ("4", "warning,budget_threshold")
    hook = services["webhook"].taken()[0]
    assert verify(WEBHOOK_SECRET, hook.body, hook.headers["x-picometer-signature"])
    data = hook.json()
    assert (data["kind"], data["severity"], data["workflow"]) == ("budget_threshold", "warning", "digest")
    assert data["amounts"]["limit_usd"] == CAP and data["amounts"]["spent_usd"] >= CAP / 2
    assert data["amounts"]["threshold"] == 0.5 and data["amounts"]["period"] == "day" and data["ts"].endswith("Z")
    assert blocked.json()["priority"] == 8 and blocked.json()["title"] == "budget_blocked · workflow:digest"
    assert blocked.path == "/message", "the Gotify token never rides in the URL"
    assert_no_secret_in(tmp_path / "daemon.log", urls["discord"])


def test_channels_down_for_a_while_get_their_alerts_once_and_in_order_across_a_restart(
    sim: SimServer, tmp_path: Path
) -> None:
    # The webhook's receiver is not even listening while it is down: its port is held by a socket bound without
    # listening (calls to it are refused), so no outgoing connection takes it as its local port meanwhile.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    hook_port = held.getsockname()[1]
    with (
        held,
        Receiver("ntfy", NTFY_TOKEN) as nt,
        Receiver("gotify", GOTIFY_TOKEN) as go,
        Receiver("discord") as dc,
    ):
        answering = (nt, go, dc)
        for fake in answering:
            fake.down = True  # 503
        urls = {
            "ntfy": nt.url,
            "gotify": go.url,
            "discord": dc.url,
            "webhook": f"http://127.0.0.1:{hook_port}/hooks/picometer",
        }
        digest = {"daily_usd": 0.002, "alert_at": [0.3, 0.6, 0.9]}
        config = gateway_config(sim.url, tmp_path, workflows={"digest": digest}, notify=notify_config(urls))
        env = secrets_env(dc.url)
        with daemon_process(config, tmp_path, env) as (url, _):
            fill_to(url, 0.65)
            until(lambda: queued(tmp_path) == dict.fromkeys(SERVICES, 2))
            for fake in answering:
                fake.wait_refused(1)
            until(lambda: all(c["failures_in_a_row"] for c in channels_state(url).values()))
            assert {n: (c["queued"], c["parked"]) for n, c in channels_state(url).items()} == dict.fromkeys(
                SERVICES, (2, False)
            ), "/-/status says which channels are behind, and by how much"
        with daemon_process(config, tmp_path, env) as (url, _):
            fill_to(url, 0.95)
            until(lambda: queued(tmp_path) == dict.fromkeys(SERVICES, 3))
            for fake in answering:
                fake.down = False
            held.close()
            with Receiver("webhook", port=hook_port) as hook:
                for fake in (*answering, hook):
                    fake.wait_taken(3, timeout=90)
                until(lambda: queued(tmp_path) == {}, timeout=30)  # every delivery acknowledged in alerts.db
                caught_up = {"queued": 0, "failures_in_a_row": 0, "parked": False}
                assert channels_state(url) == {service: caught_up for service in SERVICES}
                received = {fake.service: fake.texts() for fake in (*answering, hook)}
                ids = [t.json()["id"] for t in hook.taken()]
    for service, texts in received.items():
        assert len(texts) == 3, f"{service} got each alert once: {texts}"
        assert ["30% used" in texts[0], "60% used" in texts[1], "90% used" in texts[2]] == [True] * 3, service
    assert len(set(ids)) == 3
    assert_no_secret_in(tmp_path / "daemon.log", dc.url)


def channels_state(url: str) -> dict[str, dict[str, Any]]:
    return dict(httpx.get(f"{url}/-/status", trust_env=False).json()["channels"])


def test_status_lines_name_the_channels_that_are_behind_and_why() -> None:
    base = {"version": "x", "uptime_s": 1, "listen": "127.0.0.1:1", "requests": 0, "requests_by_status": {},
            "in_flight": 0, "cost_usd_since_start": 0, "spend_usd": {"today": 0, "month": 0}, "budgets": [],
            "pauses": []}  # fmt: skip
    fine = {"queued": 0, "failures_in_a_row": 0, "parked": False}
    channels = {
        "ntfy": fine,
        "gotify": fine,
        "discord": {"queued": 3, "failures_in_a_row": 4, "parked": False},
        "webhook": {"queued": 1, "failures_in_a_row": 1, "parked": True},
        "later": {"queued": 2, "failures_in_a_row": 0, "parked": False},
    }
    lines = status_lines({**base, "channels": channels})
    assert "alert channels delivering: ntfy, gotify" in lines
    assert "alert channel discord: 4 failures in a row, 3 waiting" in lines
    assert "alert channel webhook: its address or token was REFUSED (fix it in [notify], then restart picometer), " \
        "1 waiting" in lines  # fmt: skip
    assert "alert channel later: 2 waiting (held for quiet hours, or being sent)" in lines
    assert not any("channel" in line for line in status_lines(base)), "no channels on: not a word"


def test_a_rate_limited_channel_waits_as_long_as_the_service_asked(sim: SimServer, tmp_path: Path) -> None:
    with Receiver("ntfy", NTFY_TOKEN) as nt, Receiver("discord") as dc:
        nt.script.append(too_many(2))  # Retry-After: 2
        dc.script.append(discord_rate_limited(2.5))  # {"retry_after": 2.5} in the body
        notify = notify_config({"ntfy": nt.url, "discord": dc.url})
        digest = {"daily_usd": CAP, "alert_at": [0.5]}
        config = gateway_config(sim.url, tmp_path, workflows={"digest": digest}, notify=notify)
        with daemon_process(config, tmp_path, secrets_env(dc.url)) as (url, _):
            fill_to(url, 0.5)
            for fake, asked in ((nt, 2.0), (dc, 2.5)):
                (took,) = fake.wait_taken(1, timeout=15)
                (limited,) = fake.refused()
                assert limited.status == 429
                assert took.at - limited.at >= asked, f"{fake.service} was tried again before it allowed"
