"""Agent loops: the conversation a call belongs to (every metered API shape), the detector (unit, property and a
simulated week of ordinary chat that must raise nothing), and the alert end to end: real HTTP calls through the
daemon, to a Telegram fake, with the pause button that pauses the workflow."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from picometer.alert import SEVERITY, Kind, Severity
from picometer.config import Config, config_from_dict
from picometer.conversation import OPENING_CHARS, conversation
from picometer.record import Record
from picometer.store.outbox import Outbox
from picometer.watch.alerts import Alerter
from picometer.watch.loops import Loops
from tests.botapi import TOKEN, BotApi
from tests.servers import GatewayServer, SimServer, daemon_process, gateway_config

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday
SYSTEM = "You are a coding agent. Use the tools to finish the user's task, then say DONE."
TASK = "Fix the failing test in tests/test_parser.py"


def cfg(**alerts: Any) -> Config:
    return config_from_dict({"alerts": alerts, "workflows": {"coder": {"owner": "ana"}}})


def rec(
    workflow: str = "coder",
    conv: str | None = "c0",
    input_tokens: int = 1000,
    output_tokens: int = 100,
    cost: float | None = 0.001,
    **fields: Any,
) -> Record:
    return Record(
        ts="2026-11-23T00:00:00.000Z",
        request_id="r",
        workflow=workflow,
        conversation=conv,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        **fields,
    )


# ---------------------------------------------------------------- the conversation a call belongs to


def tool_steps(n: int) -> list[dict[str, Any]]:
    """What an OpenAI-style agent appends per step: the assistant's tool call and the tool's result."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        call = {"id": f"call_{i}", "type": "function", "function": {"name": "run", "arguments": f'{{"n": {i}}}'}}
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        out.append({"role": "tool", "tool_call_id": f"call_{i}", "content": f"output of step {i} " * 20})
    return out


def test_an_openai_chat_agent_keeps_its_conversation_as_it_grows() -> None:
    opening = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    names = {conversation({"model": "gpt-4o", "messages": opening + tool_steps(n)}, "gpt-4o") for n in range(30)}
    assert len(names) == 1
    (name,) = names
    assert len(name) == 16 and int(name, 16) >= 0
    other_task = [opening[0], {"role": "user", "content": "Write the release notes"}]
    other_system = [{"role": "system", "content": "You are a poet."}, opening[1]]
    assert conversation({"messages": other_task}, "gpt-4o") != name
    assert conversation({"messages": other_system}, "gpt-4o") != name
    assert conversation({"messages": opening}, "gpt-4o-mini") != name, "another model is another conversation"


def test_a_greeting_before_the_user_speaks_is_part_of_the_opening_not_all_of_it() -> None:
    greeting = {"role": "assistant", "content": "Hi! How can I help?"}
    a = conversation(
        {"messages": [{"role": "system", "content": SYSTEM}, greeting, {"role": "user", "content": "a"}]}, "m"
    )
    b = conversation(
        {"messages": [{"role": "system", "content": SYSTEM}, greeting, {"role": "user", "content": "b"}]}, "m"
    )
    assert a != b


def test_an_anthropic_agent_keeps_its_conversation_while_its_cache_breakpoint_moves() -> None:
    def body(steps: int) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": TASK}]}]
        for i in range(steps):
            messages.append(
                {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "run", "input": {}}]}
            )
            messages.append(
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"}]}
            )
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}  # on the newest turn, as clients do
        system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
        return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": system, "messages": messages}

    assert len({conversation(body(n), "claude-sonnet-4-5") for n in range(10)}) == 1


def test_a_responses_agent_keeps_its_conversation_as_its_input_grows() -> None:
    def body(steps: int) -> dict[str, Any]:
        items: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "input_text", "text": TASK}]}]
        for i in range(steps):
            items.append({"type": "function_call", "call_id": f"c{i}", "name": "run", "arguments": "{}"})
            items.append({"type": "function_call_output", "call_id": f"c{i}", "output": f"result {i}"})
        return {"model": "gpt-5", "instructions": SYSTEM, "input": items}

    names = {conversation(body(n), "gpt-5") for n in range(10)}
    assert len(names) == 1
    assert conversation({**body(3), "instructions": "Be brief."}, "gpt-5") not in names


def test_a_gemini_agent_keeps_its_conversation_as_its_contents_grow() -> None:
    def body(steps: int) -> dict[str, Any]:
        contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": TASK}]}]
        for i in range(steps):
            contents.append({"role": "model", "parts": [{"functionCall": {"name": "run", "args": {"n": i}}}]})
            contents.append({"role": "user", "parts": [{"functionResponse": {"name": "run", "response": {"n": i}}}]})
        return {"systemInstruction": {"parts": [{"text": SYSTEM}]}, "contents": contents}

    names = {conversation(body(n), "gemini-2.5-flash") for n in range(10)}
    assert len(names) == 1
    assert conversation(body(2), "gemini-2.5-pro") not in names, "the model is in the path, given apart"


def test_ollama_chat_and_generate_keep_their_conversation() -> None:
    chats = [{"model": "llama3.2", "messages": [{"role": "user", "content": TASK}, *tool_steps(n)]} for n in range(5)]
    assert len({conversation(b, "llama3.2") for b in chats}) == 1
    # generate: each call sends only the new prompt, and the turns so far as `context` token ids
    context = list(range(100, 400))
    generated = [
        {"model": "llama3.2", "system": SYSTEM, "prompt": f"step {i}", "context": context + list(range(i * 50))}
        for i in range(5)
    ]
    assert len({conversation(b, "llama3.2") for b in generated}) == 1
    first = conversation({"model": "llama3.2", "prompt": TASK}, "llama3.2")
    assert first is not None and first != conversation({"model": "llama3.2", "prompt": "other"}, "llama3.2")


def test_a_completions_prompt_is_named_by_its_start() -> None:
    start = "### Instructions\n" + SYSTEM * 10
    assert len(start) > 512
    names = {conversation({"prompt": start + "\nStep " * n}, "gpt-3.5-turbo-instruct") for n in range(10)}
    assert len(names) == 1
    batch = conversation({"prompt": [start, "other"]}, "gpt-3.5-turbo-instruct")
    assert batch in names, "a list of prompts is named by its first"


def test_a_body_without_a_prompt_has_no_conversation() -> None:
    assert conversation({"model": "gpt-4o"}, "gpt-4o") is None
    assert conversation({}, None) is None


class CountingList(list[Any]):
    """A list that counts how many of its items were read."""

    read = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            CountingList.read += 1
            yield item


def test_hashing_reads_a_bounded_amount_however_large_the_opening() -> None:
    huge = "x" * (OPENING_CHARS * 10)
    a = conversation({"messages": [{"role": "user", "content": huge + "a"}]}, "m")
    b = conversation({"messages": [{"role": "user", "content": huge + "b"}]}, "m")
    assert a == b, "text past the bound is not read"
    CountingList.read = 0
    parts = CountingList({"type": "text", "text": ""} for _ in range(1_000_000))
    conversation({"messages": [{"role": "user", "content": parts}]}, "m")
    assert 0 < CountingList.read <= OPENING_CHARS


# ---------------------------------------------------------------- the detector


def feed(loops: Loops, calls: list[tuple[datetime, Record]]) -> list[Any]:
    return [a for at, r in calls if (a := loops.observe(r, at)) is not None]


def a_loop(
    start: datetime, n: int, gaps: list[float], workflow: str = "coder", conv: str = "loop1"
) -> list[tuple[datetime, Record]]:
    out, at = [], start
    for i in range(n):
        out.append((at, rec(workflow, conv, input_tokens=1200 + 900 * i, output_tokens=150, cost=0.003 + 0.002 * i)))
        at += timedelta(seconds=gaps[i % len(gaps)])
    return out


def test_a_simulated_tool_loop_raises_exactly_one_alert_with_its_numbers() -> None:
    rng = random.Random(7)
    gaps = [rng.uniform(5, 20) for _ in range(30)]
    calls = a_loop(T0 + timedelta(hours=9), 30, gaps)
    loops = Loops(cfg())
    alerts = feed(loops, calls)
    assert len(alerts) == 1
    (alert,) = alerts
    assert alert.kind is Kind.AGENT_LOOP and alert.severity is Severity.CRITICAL
    assert alert.scope == "workflow:coder" and alert.workflow == "coder"
    assert alert.key == "agent_loop:workflow:coder:loop1"
    first_25 = calls[:25]
    assert alert.at == first_25[-1][0], "raised on the 25th call, as it arrived"
    took = round((first_25[-1][0] - first_25[0][0]).total_seconds())
    tokens = sum(r.input_tokens + r.output_tokens for _, r in first_25)
    cost = sum(r.cost_usd or 0 for _, r in first_25)
    text = alert.message
    assert text.startswith("Workflow coder (owner ana) looks stuck in an agent loop: 25 calls")
    assert f"in {took // 60} min {took % 60} s" in text
    assert "input 1,200 → 22,800 tokens" in text
    assert f"{tokens:,} tokens in 25 calls and cost ${cost:.2f}" in text
    assert "/pause coder 1h" in text


def test_the_loop_alert_goes_through_the_policy_once_per_cooldown(tmp_path: Path) -> None:
    """Two full loops of one conversation in an hour: the detector raises twice, the chat hears once."""
    config = cfg()
    outbox = Outbox(tmp_path / "alerts.db")
    alerter = Alerter(config.alerts, UTC, outbox, chats=(1,))
    alerts = feed(Loops(config), a_loop(T0, 50, [10.0]))
    assert len(alerts) == 2 and alerts[0].key == alerts[1].key
    assert [alerter.handle(a) for a in alerts] == ["told", "cooldown"]
    assert outbox.pending() == 1
    message = outbox.next_due(T0 + timedelta(hours=1))
    assert message is not None and "agent_loop" in message.text and "workflow:coder" in message.text
    assert [label for label, _ in message.buttons] == ["Pause 1h", "Mute 24h"]
    action = outbox.find_action(message.buttons[0][1])
    assert action is not None and (action.verb, action.target, action.duration) == ("pause", "coder", "1h")


def test_fewer_calls_than_loop_calls_or_a_slower_pace_raise_nothing() -> None:
    assert feed(Loops(cfg()), a_loop(T0, 24, [5.0])) == []
    # 30 growing calls, but never 25 within 10 minutes (one every 25 s: 25 calls span exactly 600 s)
    assert feed(Loops(cfg()), a_loop(T0, 30, [25.0])) == []
    assert len(feed(Loops(cfg()), a_loop(T0, 30, [24.9]))) == 1


def test_a_repeated_prompt_that_does_not_grow_is_not_a_loop() -> None:
    """The same prompt again and again (a cron, a duplicated webhook): duplicate_storm's business."""
    calls = [(T0 + timedelta(seconds=2 * i), rec(input_tokens=800)) for i in range(200)]
    assert feed(Loops(cfg()), calls) == []


def test_what_is_not_counted() -> None:
    loops = Loops(cfg(loop_calls=3))
    at = [T0 + timedelta(seconds=i) for i in range(20)]
    assert loops.observe(rec(input_tokens=10, canary=True), at[0]) is None
    assert loops.observe(rec(input_tokens=20, status="blocked"), at[1]) is None
    assert loops.observe(rec(conv=None, input_tokens=30), at[2]) is None
    assert len(loops) == 0, "canary, blocked and prompt-less calls are not watched"
    assert loops.observe(rec(input_tokens=100), at[3]) is None
    assert loops.observe(rec(input_tokens=0, status="error"), at[4]) is None  # failed, no usage: no step
    assert loops.observe(rec(input_tokens=200), at[5]) is None
    assert loops.observe(rec(input_tokens=200), at[6]) is None  # the same size again: not longer
    assert loops.observe(rec(input_tokens=300), at[7]) is not None


def test_each_workflow_and_conversation_is_counted_apart() -> None:
    loops = Loops(cfg(loop_calls=3))
    calls = []
    for i in range(2):  # two workflows and two conversations, interleaved: two steps each, none reaches three
        for workflow, conv in (("a", "x"), ("a", "y"), ("b", "x")):
            calls.append((T0 + timedelta(seconds=len(calls)), rec(workflow, conv, input_tokens=100 * (i + 1))))
    assert feed(loops, calls) == []
    alert = loops.observe(rec("b", "x", input_tokens=300), T0 + timedelta(seconds=10))
    assert alert is not None and alert.scope == "workflow:b" and alert.key.endswith(":x")


def test_a_quiet_conversation_is_forgotten_and_memory_stays_bounded() -> None:
    loops = Loops(cfg(loop_calls=5, loop_window_s=60), max_conversations=100)
    for i in range(10_000):  # distinct conversations, all at once: the oldest are dropped
        loops.observe(rec(conv=f"c{i}", input_tokens=10), T0)
    assert len(loops) == 100
    loops.observe(rec(conv="late", input_tokens=10), T0 + timedelta(seconds=61))
    assert len(loops) == 1, "conversations idle for a whole window are forgotten"
    long = Loops(cfg(loop_calls=5))
    for i in range(1000):
        long.observe(rec(input_tokens=10 + i), T0 + timedelta(seconds=i * 0.1))
    assert all(len(c.growing) <= 5 for c in long._watched.values())


def test_cost_so_far_says_when_some_calls_had_no_price() -> None:
    calls = [(T0 + timedelta(seconds=i), rec(input_tokens=100 + i, cost=None)) for i in range(3)]
    (alert,) = feed(Loops(cfg(loop_calls=3)), calls)
    assert "cost $0 (some calls have no known price)" in alert.message


def test_new_thresholds_on_reload_count_afresh() -> None:
    loops = Loops(cfg(loop_calls=10))
    feed(loops, a_loop(T0, 5, [1.0]))
    loops.reconfigure(cfg(loop_calls=3))
    assert len(loops) == 0
    assert len(feed(loops, a_loop(T0 + timedelta(seconds=10), 3, [1.0]))) == 1


def test_agent_loop_is_critical() -> None:
    assert SEVERITY[Kind.AGENT_LOOP] is Severity.CRITICAL


# ---------------------------------------------------------------- properties


@st.composite
def traffic(draw: st.DrawFn) -> tuple[int, float, list[tuple[float, int, int]]]:
    """(loop_calls, window_s, calls as (seconds since start, conversation 0-2, input tokens))."""
    loop_calls = draw(st.integers(3, 12))
    window = draw(st.floats(10, 1000))
    gaps = draw(st.lists(st.floats(0, 2 * window / loop_calls), min_size=1, max_size=80))
    at, calls = 0.0, []
    for gap in gaps:
        at += gap
        calls.append((at, draw(st.integers(0, 2)), draw(st.integers(0, 5000))))
    return loop_calls, window, calls


def run(loop_calls: int, window: float, calls: list[tuple[float, int, int]]) -> list[Any]:
    loops = Loops(cfg(loop_calls=loop_calls, loop_window_s=window))
    return feed(loops, [(T0 + timedelta(seconds=t), rec(conv=f"c{c}", input_tokens=n)) for t, c, n in calls])


@given(traffic())
def test_calls_of_a_conversation_spread_wider_than_the_window_never_alert(
    case: tuple[int, float, list[tuple[float, int, int]]],
) -> None:
    """If every two calls of a conversation are more than window/(loop_calls - 1) apart, no loop_calls of them fit
    in one window."""
    loop_calls, window, calls = case
    gap = window / (loop_calls - 1) + 0.001  # a millisecond more: clear of float and microsecond rounding
    spread: list[tuple[float, int, int]] = []
    last: dict[int, float] = {}
    for t, c, n in calls:
        t = max(t, last.get(c, -gap) + gap)
        last[c] = t
        spread.append((t, c, n))
    spread.sort()
    assert run(loop_calls, window, spread) == []


@given(traffic())
def test_input_that_never_grows_never_alerts(case: tuple[int, float, list[tuple[float, int, int]]]) -> None:
    loop_calls, window, calls = case
    shrinking = [(t, c, 10_000 - i) for i, (t, c, _) in enumerate(calls)]
    assert run(loop_calls, window, shrinking) == []


@given(traffic())
def test_at_most_one_alert_per_loop_calls_growing_calls(case: tuple[int, float, list[tuple[float, int, int]]]) -> None:
    loop_calls, window, calls = case
    alerts = run(loop_calls, window, calls)
    last: dict[int, int] = {}
    growing: dict[int, int] = {}
    for _, c, n in calls:
        if n > 0:
            growing[c] = growing.get(c, 0) + (n > last.get(c, 0))
            last[c] = n
    for c in range(3):
        assert sum(a.key.endswith(f":c{c}") for a in alerts) <= growing.get(c, 0) // loop_calls


@given(st.integers(3, 30), st.floats(10, 3600), st.lists(st.integers(1, 1000), min_size=30, max_size=30))
def test_a_steady_loop_inside_the_window_always_alerts_on_its_loop_calls_th_call(
    loop_calls: int, window: float, growth: list[int]
) -> None:
    step = window / loop_calls  # loop_calls calls span (loop_calls - 1) steps: inside the window
    sizes, total = [], 0
    for g in growth[:loop_calls]:
        total += g
        sizes.append(total)
    alerts = run(loop_calls, window, [(i * step, 0, n) for i, n in enumerate(sizes)])
    assert len(alerts) == 1 and alerts[0].at == T0 + timedelta(seconds=(loop_calls - 1) * step)


# ---------------------------------------------------------------- a week of ordinary traffic


@dataclass
class Week:
    calls: list[tuple[datetime, Record]]
    sessions: int
    shared_openings: int  # sessions whose conversation another session also had (common greetings)


CHAT_SYSTEM = "You are Pip, a friendly assistant on a Raspberry Pi. Answer briefly."
GREETINGS = ("hi", "hello", "hey", "Hi!")


def chat_week(seed: int) -> Week:
    """Seven days of a household's LLM traffic: 30 people chatting (sessions of 2-40 turns, 20 s to 10 min to
    think between turns, several sessions a day, some at once), a small agent on a schedule (3-6 tool steps
    every 15 minutes), two cron jobs repeating one prompt, and a duplicated webhook's burst each day."""
    rng = random.Random(seed)
    calls: list[tuple[datetime, Record]] = []
    seen: dict[tuple[str, str], int] = {}
    sessions = 0

    def call(at: datetime, workflow: str, model: str, body: dict[str, Any], tokens: int, out: int) -> None:
        name = conversation(body, model)
        assert name is not None
        calls.append(
            (at, rec(workflow, name, input_tokens=tokens, output_tokens=out, cost=tokens * 2.5e-7 + out * 1e-6))
        )

    for person in range(30):
        for day in range(7):
            for _ in range(rng.randint(1, 5)):
                sessions += 1
                at = T0 + timedelta(days=day, hours=rng.uniform(7, 23))
                opener = (
                    rng.choice(GREETINGS) if rng.random() < 0.3 else f"{person}: {rng.random()} what should I cook?"
                )
                workflow, model = rng.choice((("chat", "gpt-4o-mini"), ("assistant", "claude-haiku-4-5")))
                messages: list[dict[str, str]] = [
                    {"role": "system", "content": CHAT_SYSTEM},
                    {"role": "user", "content": opener},
                ]
                tokens = 40 + len(opener) // 4
                for turn in range(rng.randint(2, 40)):
                    reply = rng.randint(20, 600)
                    done = at + timedelta(seconds=rng.uniform(1, 30))
                    call(done, workflow, model, {"model": model, "messages": messages}, tokens, reply)
                    said = rng.randint(3, 80)
                    messages = [
                        *messages,
                        {"role": "assistant", "content": "…"},
                        {"role": "user", "content": f"t{turn}"},
                    ]
                    tokens += reply + said
                    at = done + timedelta(seconds=20 * 30 ** rng.random())  # 20 s to 10 min, short pauses likelier
                key = (workflow, str(conversation({"messages": messages[:2]}, model)))
                seen[key] = seen.get(key, 0) + 1
    for run_at in range(7 * 24 * 4):  # the scheduled agent: a few tool steps, then done, every 15 minutes
        at = T0 + timedelta(minutes=15 * run_at)
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "Check the sensors."}, {"role": "user", "content": "heartbeat"}],
        }
        tokens = 300
        for _ in range(rng.randint(3, 6)):
            at += timedelta(seconds=rng.uniform(2, 8))
            call(at, "sensors", "gpt-4o-mini", body, tokens, 60)
            tokens += rng.randint(100, 400)
    for minute in range(0, 7 * 24 * 60, 5):  # crons: the same prompt every 5 minutes and every hour
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise the new mail."}]}
        call(T0 + timedelta(minutes=minute), "mail", "gpt-4o-mini", body, 900, 120)
        if minute % 60 == 0:
            call(
                T0 + timedelta(minutes=minute, seconds=30),
                "digest",
                "gpt-4o",
                {"messages": [{"role": "user", "content": "Digest"}]},
                2000,
                400,
            )
    for day in range(7):  # a webhook delivered 40 times in two minutes
        for i in range(40):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "New order #1234"}]}
            call(T0 + timedelta(days=day, hours=12, seconds=3 * i), "orders", "gpt-4o-mini", body, 350, 80)
    calls.sort(key=lambda c: c[0])
    return Week(calls, sessions, sum(n for n in seen.values() if n > 1))


def test_a_week_of_ordinary_chat_and_crons_raises_no_agent_loop() -> None:
    week = chat_week(seed=2026)
    assert week.sessions > 500 and len(week.calls) > 15_000, "a busy week"
    assert week.shared_openings > 50, "many sessions open the same way and share a conversation name"
    loops = Loops(cfg())
    assert feed(loops, week.calls) == []
    assert len(loops) <= 2000


def test_the_same_week_with_one_agent_loop_in_it_raises_exactly_that_one() -> None:
    week = chat_week(seed=2026)
    start = T0 + timedelta(days=3, hours=20)  # a busy evening
    loop = a_loop(start, 40, [3.0, 12.0, 7.0], workflow="chat", conv="stuck")
    alerts = feed(Loops(cfg()), sorted(week.calls + loop, key=lambda c: c[0]))
    assert [(a.kind, a.key) for a in alerts] == [(Kind.AGENT_LOOP, "agent_loop:workflow:chat:stuck")]


# ---------------------------------------------------------------- through the gateway


def agent_body(steps: int, model: str = "gpt-4o-mini") -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}, *tool_steps(steps)]
    return {"model": model, "max_tokens": 16, "messages": messages}


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, trust_env=False, timeout=30)


def test_the_usage_log_names_each_calls_conversation(sim: SimServer, tmp_path: Path) -> None:
    with GatewayServer(gateway_config(sim.url, tmp_path)) as gw:
        for steps in range(3):
            assert post(gw.url, "/w/coder/openai/chat/completions", agent_body(steps)).status_code == 200
        for steps in range(2):
            anthropic = {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "system": SYSTEM,
                "messages": [{"role": "user", "content": TASK}]
                + [{"role": "assistant", "content": "step"}, {"role": "user", "content": "ok"}] * steps,
            }
            assert post(gw.url, "/w/coder/anthropic/v1/messages", anthropic).status_code == 200
        records = gw.records(wait_for=5)
    chat, messages = {r["conversation"] for r in records[:3]}, {r["conversation"] for r in records[3:]}
    assert len(chat) == 1 and len(messages) == 1 and chat != messages
    assert all(isinstance(c, str) and len(c) == 16 for c in chat | messages)
    assert records[0]["input_tokens"] < records[1]["input_tokens"] < records[2]["input_tokens"]


def test_with_store_prompts_none_no_conversation_is_logged(sim: SimServer, tmp_path: Path) -> None:
    raw = gateway_config(sim.url, tmp_path, storage={"store_prompts": "none"})
    with GatewayServer(raw) as gw:
        assert post(gw.url, "/openai/chat/completions", agent_body(1)).status_code == 200
        (record,) = gw.records(wait_for=1)
    assert record["conversation"] is None and record["prompt_hash"] is None


CHAT_ID = 111


def test_an_agent_loop_of_real_calls_reaches_telegram_with_a_pause_button_that_pauses_it(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    telegram = {"enabled": True, "bot_token": "env:PM_TELEGRAM_TOKEN", "chat_ids": [CHAT_ID], "api_base": botapi.url}
    config = gateway_config(sim.url, tmp_path, telegram=telegram, workflows={"coder": {"owner": "ana"}})
    with daemon_process(config, tmp_path, {"PM_TELEGRAM_TOKEN": TOKEN}) as (url, _):
        for steps in range(30):  # an agent re-sending its growing context after every tool call
            assert post(url, "/w/coder/openai/chat/completions", agent_body(steps)).status_code == 200
        (message,) = botapi.wait_sent(1, timeout=15)
        text = message["text"]
        assert "agent_loop" in text and "workflow:coder" in text
        assert "Workflow coder (owner ana) looks stuck in an agent loop: 25 calls of the same conversation" in text
        assert "/pause coder 1h" in text
        buttons = json.loads(message["reply_markup"])["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["Pause 1h", "Mute 24h"]
        botapi.press(CHAT_ID, buttons[0]["callback_data"])
        _, done = botapi.wait_sent(2, timeout=15)
        assert "paused coder for 1h" in done["text"]
        refused = post(url, "/w/coder/openai/chat/completions", agent_body(30))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "workflow_paused"
        assert len([m for m in botapi.sent() if "agent_loop" in m["text"]]) == 1, "told once"
    records = [
        json.loads(line)
        for f in sorted((tmp_path / "logs").glob("usage-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 30 and len({r["conversation"] for r in ok}) == 1
