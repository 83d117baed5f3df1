"""The alert policy over a real alerts.db: cooldown, quiet hours, mutes, "over" notes, a bounded queue,
and replies that Telegram accepts (escaped, split under its limit, emoji intact)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from picometer.alert import Alert, Kind
from picometer.config import AlertsConfig
from picometer.store import outbox as outbox_module
from picometer.store.outbox import Outbox
from picometer.watch.alerts import OVER_AFTER_S, Alerter, quiet_until, render
from picometer.watch.commands import LIMIT, split

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Berlin


def alerter(tmp_path: Path, **cfg: object) -> Alerter:
    return Alerter(AlertsConfig(**cfg), BERLIN, Outbox(tmp_path / "alerts.db"), chats=(1, 2))  # type: ignore[arg-type]


def spike(at: datetime, workflow: str = "digest") -> Alert:
    return Alert(Kind.SPIKE, f"spike:workflow:{workflow}", "Workflow digest spent $3.00", at, f"workflow:{workflow}")


def test_one_alert_per_key_per_cooldown_then_a_reminder(tmp_path: Path) -> None:
    a = alerter(tmp_path, cooldown_s=3600)
    assert a.handle(spike(T0)) == "told"
    assert a.outbox.pending() == 2, "one message per configured chat"
    for minutes in (1, 30, 59):
        assert a.handle(spike(T0 + timedelta(minutes=minutes))) == "cooldown"
    assert a.handle(spike(T0, "other")) == "told", "another workflow is another key"
    assert a.handle(spike(T0 + timedelta(minutes=61))) == "told"
    first = a.outbox.next_due(T0 + timedelta(hours=2))
    assert first is not None and [label for label, _ in first.buttons] == ["Pause 1h", "Mute 24h"]
    action = a.outbox.find_action(first.buttons[0][1])
    assert action is not None and (action.verb, action.target, action.duration) == ("pause", "digest", "1h")


def test_the_cooldown_survives_a_restart(tmp_path: Path) -> None:
    assert alerter(tmp_path).handle(spike(T0)) == "told"
    assert alerter(tmp_path).handle(spike(T0 + timedelta(minutes=5))) == "cooldown"


def test_quiet_hours_hold_warnings_until_morning_and_let_critical_through(tmp_path: Path) -> None:
    a = alerter(tmp_path, quiet_hours="23:00-07:00")
    night = datetime(2026, 11, 23, 23, 30, tzinfo=BERLIN)
    assert a.handle(spike(night)) == "held"
    assert a.outbox.next_due(night) is None
    runaway = Alert(Kind.RUNAWAY, "runaway:workflow:x", "running away", night, "workflow:x")
    assert a.handle(runaway) == "told"
    while (due := a.outbox.next_due(night)) is not None:
        assert due.kind == "runaway"
        a.outbox.done(due.id)
    morning = datetime(2026, 11, 24, 7, 0, tzinfo=BERLIN)
    assert a.outbox.next_time() == morning.astimezone(UTC)


@given(st.integers(0, 24 * 60 - 1))
def test_quiet_until_is_inside_exactly_the_quiet_span(minute: int) -> None:
    now = datetime(2026, 3, 28, tzinfo=BERLIN) + timedelta(minutes=minute)
    end = quiet_until("23:00-07:00", now, BERLIN)
    local = now.time()
    inside = local.hour >= 23 or local.hour < 7
    assert (end is not None) == inside
    if end is not None:
        assert end > now and end - now <= timedelta(hours=8, minutes=1)
        assert end.astimezone(BERLIN).hour == 7


def test_a_mute_silences_a_kind_for_a_while(tmp_path: Path) -> None:
    a = alerter(tmp_path)
    a.outbox.mute("spike", "", T0 + timedelta(hours=24))
    assert a.handle(spike(T0)) == "muted"
    assert a.handle(spike(T0 + timedelta(hours=25))) == "told"
    a.outbox.mute("spike", "workflow:digest", T0 + timedelta(days=3))  # what the button mutes
    assert a.handle(spike(T0 + timedelta(hours=26), "other")) == "told"


def test_a_condition_that_passed_is_told_as_over_once(tmp_path: Path) -> None:
    a = alerter(tmp_path)
    a.handle(spike(T0))
    assert a.settle(T0 + timedelta(seconds=OVER_AFTER_S / 2)) == [], "not over while it may come back"
    assert a.settle(T0 + timedelta(seconds=OVER_AFTER_S + 1)) == ["spike:workflow:digest"]
    assert a.settle(T0 + timedelta(seconds=OVER_AFTER_S * 3)) == []
    texts = []
    while (m := a.outbox.next_due(T0 + timedelta(hours=1))) is not None:
        texts.append(m.text)
        a.outbox.done(m.id)
    assert any(t.startswith("✅ <b>over: spike</b>") for t in texts)


def test_a_full_queue_drops_the_least_urgent_first_and_counts_them(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(outbox_module, "QUEUE_MAX", 3)  # type: ignore[attr-defined]
    box = Outbox(tmp_path / "alerts.db")
    for i, rank in enumerate((2, 3, 2, 3, 1)):
        box.put((7,), "k", rank, f"m{i}", (), T0, T0)
    kept = []
    while (m := box.next_due(T0)) is not None:
        kept.append(m.text)
        box.done(m.id)
    assert kept == ["m1", "m2", "m3"], "the oldest warning, then the new info, made room; order kept"
    assert box.take_dropped(7) == 2
    assert box.take_dropped(7) == 0


def test_an_alert_that_meets_a_full_disk_is_kept_and_queued_later(tmp_path: Path) -> None:
    a = alerter(tmp_path)
    a.outbox._db.execute("PRAGMA query_only = ON")  # every write fails, as on a full disk
    assert a.handle(spike(T0)) == "told"
    assert a.outbox.pending() == 0
    a.outbox._db.execute("PRAGMA query_only = OFF")
    a.retry_unsaved()
    assert a.outbox.pending() == 2


def test_render_escapes_user_text_and_keeps_emoji() -> None:
    alert = Alert(Kind.SPIKE, "k", "Workflow <b>ünïcode 🚀</b> & co spent $1", T0, "workflow:🚀&<x>")
    text = render(alert, BERLIN)
    assert "&lt;b&gt;ünïcode 🚀&lt;/b&gt; &amp; co" in text
    assert "workflow:🚀&amp;&lt;x&gt;" in text
    assert text.startswith("⚠️ <b>spike</b>")


@given(st.lists(st.sampled_from(["a", "é", "🚀", "&amp;", "\n", " ", "x" * 50]), max_size=300).map("".join))
def test_split_keeps_every_character_in_pieces_under_the_limit(text: str) -> None:
    pieces = split(text, limit=200)
    assert all(len(p.encode("utf-16-le")) // 2 <= 200 for p in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    for p in pieces:  # never a cut inside an entity
        assert not p.rstrip().endswith(("&", "&a", "&am"))


def test_a_long_reply_is_split_for_telegram() -> None:
    text = "\n".join(f"workflow-{i} 🚀: $0.0001, 1 calls" for i in range(400))
    pieces = split(text)
    assert len(pieces) > 1 and all(len(p.encode("utf-16-le")) // 2 <= LIMIT for p in pieces)
    assert "\n".join(pieces) == text
