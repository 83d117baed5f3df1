"""[[rules]]: the calls nobody labelled (PicoClaw's heartbeat) get a workflow of their own, with its own line in the
report and its own caps, or are refused before anything reaches the provider."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from picometer.config import Config, config_from_dict
from picometer.gateway.rules import MAX_MATCH_CHARS, Call, Rules, last_user_message
from picometer.gateway.tags import Tags
from tests.cli import run
from tests.oracle import independent_cost
from tests.patience import patience
from tests.sdks import ant, oa
from tests.servers import GatewayServer, SimServer, daemon_process, gateway_config

HEARTBEAT = "This is a scheduled heartbeat check"
HEARTBEAT_RULE = {"match_path": "chat/completions$", "match_prompt": "scheduled heartbeat", "workflow": "heartbeat"}
MakeGateway = Callable[..., GatewayServer]


def rules(*entries: dict[str, Any], **sections: Any) -> Rules:
    return Rules(config(*entries, **sections))


def config(*entries: dict[str, Any], **sections: Any) -> Config:
    return config_from_dict({"rules": list(entries), **sections})


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def call(
    body: dict[str, Any] | None = None,
    path: str = "chat/completions",
    headers: dict[str, str] | None = None,
    shape: str | None = "openai",
) -> Call:
    model = body.get("model") if body else None
    return Call(path, model, headers or {}, body, shape)


def untagged(**own: Any) -> Tags:
    fields: dict[str, Any] = {"workflow": "untagged", "env": "prod", "tenant": None, "prompt_version": None}
    return Tags(**{**fields, **own}, correlation_id=None)


# --- matching -------------------------------------------------------------------------------------------------


def test_each_match_key_alone_decides() -> None:
    by_path = rules({"match_path": "chat/completions$", "workflow": "a"})
    assert by_path.match(call(chat("hi"))) is not None
    assert by_path.match(call(chat("hi"), path="v1/messages")) is None

    by_model = rules({"match_model": "^gpt-4o-mini$", "workflow": "a"})
    assert by_model.match(call(chat("hi"))) is not None
    assert by_model.match(call({**chat("hi"), "model": "gpt-4o"})) is None
    assert by_model.match(call(None, path="files")) is None, "a call with no model matches no match_model"

    by_prompt = rules({"match_prompt": "scheduled heartbeat", "workflow": "a"})
    assert by_prompt.match(call(chat(HEARTBEAT))) is not None
    assert by_prompt.match(call(chat("water the basil"))) is None
    assert by_prompt.match(call(None, path="files")) is None, "a call with no body has no prompt to match"


def test_header_names_match_whatever_their_case() -> None:
    r = rules({"match_header": {"User-Agent": "^PicoClaw/"}, "workflow": "pico"})
    assert r.match(call(chat("hi"), headers={"user-agent": "PicoClaw/0.3"})) is not None
    assert r.match(call(chat("hi"), headers={"user-agent": "curl/8.5"})) is None
    assert r.match(call(chat("hi"), headers={})) is None, "a header the call lacks matches nothing"


def test_every_key_given_must_match_and_the_first_matching_rule_wins() -> None:
    r = rules(
        {"match_model": "^gpt-4o$", "match_prompt": "heartbeat", "workflow": "big-heartbeat"},
        {"match_prompt": "heartbeat", "workflow": "heartbeat"},
        {"match_path": "chat/completions$", "workflow": "chat"},
        {"action": "block"},
    )
    assert r.match(call(chat(HEARTBEAT))).config.workflow == "heartbeat"  # type: ignore[union-attr]
    assert r.match(call({**chat(HEARTBEAT), "model": "gpt-4o"})).number == 1  # type: ignore[union-attr]
    assert r.match(call(chat("hello"))).number == 3  # type: ignore[union-attr]
    last = r.match(call(None, path="files", shape=None))
    assert last is not None and last.number == 4 and last.block, "a rule with no match_ key matches every call"
    assert rules().match(call(chat(HEARTBEAT))) is None


def test_the_rule_says_what_it_matches_as_the_config_writes_it() -> None:
    r = rules({"workflow": "a"}, {"match_path": r"batches$", "match_header": {"User-Agent": "curl"}, "action": "block"})
    rule = r.match(call(None, path="batches", headers={"user-agent": "curl/8"}, shape=None))
    assert rule is not None
    assert rule.described() == "[[rules]] #1 (matches every call)"
    second = r.rules[1]
    assert second.described() == '[[rules]] #2 (match_path = "batches$", match_header.User-Agent = "curl")'


# --- the last user message, per API shape -----------------------------------------------------------------------

TOOL_RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42 degrees"}]}


@pytest.mark.parametrize(
    ("shape", "body"),
    [
        # OpenAI chat: a string, or parts; assistant, tool and system messages after it do not count
        (
            "openai",
            {
                "messages": [
                    {"role": "system", "content": "You are PicoClaw"},
                    {"role": "user", "content": "old question"},
                    {"role": "assistant", "content": "old answer"},
                    {"role": "user", "content": HEARTBEAT},
                    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                ]
            },
        ),
        (
            "openai",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:..."}},
                            {"type": "text", "text": HEARTBEAT},
                        ],
                    }
                ]
            },
        ),
        # OpenAI Responses: a string, or items with string content or input_text parts
        ("openai", {"input": HEARTBEAT}),
        (
            "openai",
            {
                "input": [
                    {"role": "user", "content": "old question"},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": HEARTBEAT}]},
                    {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                ]
            },
        ),
        # OpenAI completions: a string, or a list of them
        ("openai", {"prompt": HEARTBEAT}),
        ("openai", {"prompt": ["first", HEARTBEAT]}),
        # Anthropic: a string, or blocks; a user turn of tool results only has no text to match
        ("anthropic", {"messages": [{"role": "user", "content": HEARTBEAT}]}),
        (
            "anthropic",
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": HEARTBEAT}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "temp", "input": {}}]},
                    TOOL_RESULT,
                ]
            },
        ),
        # Gemini: contents with role "user" or none, text in parts
        (
            "gemini",
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "old"}]},
                    {"parts": [{"text": "This is a scheduled "}, {"inline_data": {}}, {"text": "heartbeat check"}]},
                    {"role": "model", "parts": [{"text": "HEARTBEAT_OK"}]},
                ],
                "systemInstruction": {"parts": [{"text": "You are PicoClaw"}]},
            },
        ),
        # Ollama: api/chat like OpenAI, api/generate with a prompt
        ("ollama", {"model": "llama3.2", "messages": [{"role": "user", "content": HEARTBEAT}], "stream": False}),
        ("ollama", {"model": "llama3.2", "prompt": HEARTBEAT, "system": "You are PicoClaw"}),
    ],
)
def test_the_last_user_message_of_every_metered_shape(shape: str, body: dict[str, Any]) -> None:
    text = last_user_message(body, shape)
    assert text is not None and "scheduled" in text and "heartbeat check" in text
    assert rules({"match_prompt": "scheduled \\s*heartbeat", "workflow": "heartbeat"}).match(
        Call("any", None, {}, body, shape)
    )


def test_no_user_message_means_no_prompt() -> None:
    assert last_user_message({"messages": [{"role": "system", "content": HEARTBEAT}]}, "openai") is None
    assert last_user_message({"contents": [{"role": "model", "parts": [{"text": HEARTBEAT}]}]}, "gemini") is None
    assert last_user_message({"messages": [TOOL_RESULT]}, "anthropic") is None
    assert last_user_message({"model": "gpt-4o-mini"}, "openai") is None


# --- bounded input ----------------------------------------------------------------------------------------------


def test_a_5_mb_prompt_is_matched_on_its_last_characters_only() -> None:
    r = rules({"match_prompt": "heartbeat check", "workflow": "heartbeat"})
    filler = "x" * 5_000_000
    assert r.match(call(chat(filler + HEARTBEAT))) is not None, "the ask at the end is seen"
    assert r.match(call(chat(HEARTBEAT + filler))) is None, "text 5 MB back is never scanned"
    seen = last_user_message(chat(filler + HEARTBEAT), "openai")
    assert seen is not None and len(seen) == MAX_MATCH_CHARS and seen.endswith(HEARTBEAT)
    # quadratic in what it scans: over 5 MB it would run for hours, over the 4,096-character tail it returns
    quadratic = rules({"match_prompt": "x*y", "workflow": "never"})
    assert quadratic.match(call(chat(filler))) is None


def test_only_a_bounded_number_of_messages_and_parts_is_walked() -> None:
    r = rules({"match_prompt": "heartbeat", "workflow": "heartbeat"})
    many = [{"role": "user", "content": HEARTBEAT}] + [{"role": "assistant", "content": "ok"}] * 200_000
    assert r.match(call({"model": "m", "messages": many})) is None
    parts = [{"type": "text", "text": HEARTBEAT}] + [{"type": "image_url", "image_url": {}}] * 200_000
    assert r.match(call({"model": "m", "messages": [{"role": "user", "content": parts}]})) is None
    wide = [{"type": "text", "text": "x" * 100_000} for _ in range(50)] + [{"type": "text", "text": HEARTBEAT}]
    seen = last_user_message({"messages": [{"role": "user", "content": wide}]}, "openai")
    assert seen is not None and len(seen) == MAX_MATCH_CHARS and seen.endswith(HEARTBEAT)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["messages", "input", "prompt", "contents", "role", "content", "parts", "text", "type"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=40,
)


@given(
    body=st.dictionaries(st.sampled_from(["messages", "input", "prompt", "contents", "model"]), JSONISH, max_size=4),
    shape=st.sampled_from(["openai", "anthropic", "gemini", "ollama", "unknown", None]),
)
def test_extraction_never_raises_on_any_json(body: dict[str, Any], shape: str | None) -> None:
    text = last_user_message(body, shape)
    assert text is None or (isinstance(text, str) and len(text) <= MAX_MATCH_CHARS)
    r = rules({"match_prompt": "(?s).", "workflow": "w"})
    assert (r.match(Call("chat/completions", None, {}, body, shape)) is not None) == bool(text)


# --- the tags a rule sets ---------------------------------------------------------------------------------------


def test_a_rule_sets_only_the_tags_a_call_does_not_carry() -> None:
    cfg = config(
        {"match_prompt": "heartbeat", "workflow": "heartbeat", "tenant": "home", "prompt_version": "hb-1"},
        workflows={"heartbeat": {"env": "pi"}},
    )
    [rule] = Rules(cfg).rules
    tagged = rule.tag(untagged(), {}, cfg)
    assert (tagged.workflow, tagged.env, tagged.tenant, tagged.prompt_version) == ("heartbeat", "pi", "home", "hb-1")
    assert rule.tag(untagged(env="staging"), {"x-picometer-env": "staging"}, cfg).env == "staging"
    own = rule.tag(untagged(workflow="garden", tenant="me", prompt_version="v7"), {}, cfg)
    assert (own.workflow, own.env, own.tenant, own.prompt_version) == ("garden", "prod", "me", "v7")

    env_cfg = config({"match_prompt": "heartbeat", "workflow": "heartbeat", "env": "lab"})
    [env_rule] = Rules(env_cfg).rules
    assert env_rule.tag(untagged(), {}, env_cfg).env == "lab"
    assert env_rule.tag(untagged(workflow="garden"), {}, env_cfg).env == "lab", "env is set where none was sent"


# --- end to end through the real gateway ------------------------------------------------------------------------


def heartbeat(base: str, **kwargs: Any) -> Any:
    """What PicoClaw sends every 30 minutes: an OpenAI chat call with no workflow of its own."""
    messages = [
        {"role": "system", "content": "You are PicoClaw, a small assistant on a Raspberry Pi."},
        {"role": "user", "content": HEARTBEAT + ". Read HEARTBEAT.md and act on it, or reply HEARTBEAT_OK."},
    ]
    return oa(base).chat.completions.create(model="gpt-4o-mini", messages=messages, **kwargs)  # type: ignore[arg-type]


def test_a_heartbeat_nobody_labelled_gets_its_own_workflow_and_report_row(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    gw = make_gateway(rules=[HEARTBEAT_RULE], workflows={"heartbeat": {"env": "pi"}})
    reply = heartbeat(f"{gw.url}/openai")
    other = oa(f"{gw.url}/openai").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "water the basil"}]
    )
    beat, plain = gw.records(2)
    assert (beat["workflow"], beat["env"], beat["status"], beat["usage_source"]) == (
        "heartbeat",
        "pi",
        "ok",
        "provider",
    )
    assert reply.usage is not None and other.usage is not None
    tokens = {"input": reply.usage.prompt_tokens, "output": reply.usage.completion_tokens}
    assert (beat["input_tokens"], beat["output_tokens"]) == (tokens["input"], tokens["output"]) and tokens["input"] > 0
    expected = independent_cost("gpt-4o-mini", "openai", tokens)
    assert beat["cost_usd"] == pytest.approx(expected, rel=1e-9) and beat["cost_usd"] > 0
    assert (plain["workflow"], plain["env"], plain["status"]) == ("untagged", "prod", "ok")

    gw.tick()
    storage = gw.config.storage
    cfg = tmp_path / "report.toml"
    cfg.write_text(tomli_w.dumps({"storage": {"data_dir": storage.data_dir, "log_dir": storage.log_dir}}))
    report = run("report", "--by", "workflow", "--config", str(cfg))
    assert report.returncode == 0, report.stderr
    [row] = [line.split() for line in report.stdout.splitlines() if line.startswith("heartbeat ")]
    assert row[1:3] == ["1", "1"], f"one call, ok: {row}"
    assert any(line.startswith("untagged ") for line in report.stdout.splitlines()), report.stdout
    data = json.loads(run("report", "--by", "workflow", "--json", "--config", str(cfg)).stdout)
    [own] = [r for r in data["rows"] if r["key"] == "heartbeat"]
    assert (own["requests"], own["input_tokens"], own["output_tokens"]) == (1, tokens["input"], tokens["output"])
    assert own["cost_usd"] == pytest.approx(expected, rel=1e-6)


def test_a_call_that_names_its_own_workflow_keeps_it(make_gateway: MakeGateway) -> None:
    gw = make_gateway(rules=[HEARTBEAT_RULE])
    heartbeat(f"{gw.url}/openai", extra_headers={"x-picometer-workflow": "picoclaw"})
    heartbeat(f"{gw.url}/w/assistant/openai")
    by_header, by_path = gw.records(2)
    assert (by_header["workflow"], by_header["status"]) == ("picoclaw", "ok")
    assert (by_path["workflow"], by_path["status"]) == ("assistant", "ok")


def test_a_block_rule_refuses_before_the_provider_hears_anything(sim: SimServer, make_gateway: MakeGateway) -> None:
    block = {"match_prompt": "scheduled heartbeat", "action": "block"}
    claude = {"match_header": {"User-Agent": "Anthropic/Python"}, "workflow": "claude-bot", "action": "block"}
    gw = make_gateway(rules=[block, claude], budgets={"daily_usd": 5})
    before = sim.sim.requests
    with pytest.raises(openai.PermissionDeniedError) as refused:
        heartbeat(f"{gw.url}/openai", extra_headers={"x-picometer-workflow": "picoclaw"})
    assert refused.value.status_code == 403 and refused.value.code == "blocked_by_rule"
    message = refused.value.message
    assert '[[rules]] #1 (match_prompt = "scheduled heartbeat")' in message and "edit or remove that rule" in message
    assert refused.value.response.headers["x-should-retry"] == "false"

    r = ant(f"{gw.url}/anthropic").messages.with_raw_response
    with pytest.raises(Exception) as anthropic_refused:
        r.create(model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    body = anthropic_refused.value.response.json()  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error"]["type"] == "blocked_by_rule", "in the Messages API's own shape"
    assert "[[rules]] #2" in body["error"]["message"]
    assert sim.sim.requests == before, "nothing reached the provider"

    beat, claude_call = gw.records(2)
    for rec in (beat, claude_call):
        assert (rec["status"], rec["error_type"], rec["http_status"]) == ("blocked", "blocked_by_rule", 403)
        assert rec["cost_usd"] in (0, None) and rec["input_tokens"] == 0
    assert beat["workflow"] == "picoclaw", "a block refuses whatever the call's tags"
    assert claude_call["workflow"] == "claude-bot", "a block rule's workflow names the refused call in reports"


def test_the_rule_workflow_brings_its_cap_and_its_pause(sim: SimServer, make_gateway: MakeGateway) -> None:
    # a millionth of a dollar: less than a heartbeat's prompt alone costs at gpt-4o-mini's $0.15 per 1M input tokens
    gw = make_gateway(rules=[HEARTBEAT_RULE], workflows={"heartbeat": {"daily_usd": 0.000001}})
    before = sim.sim.requests
    with pytest.raises(openai.RateLimitError) as capped:
        heartbeat(f"{gw.url}/openai")
    assert capped.value.code == "budget_exceeded" and "heartbeat" in capped.value.message
    assert sim.sim.requests == before
    fine = oa(f"{gw.url}/openai").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "water the basil"}]
    )
    assert fine.usage is not None, "other untagged calls are not under the heartbeat's cap"
    capped_rec, fine_rec = gw.records(2)
    assert (capped_rec["workflow"], capped_rec["status"], capped_rec["error_type"]) == (
        "heartbeat",
        "blocked",
        "budget_exceeded",
    )
    assert "heartbeat" in capped_rec["budget"]
    assert (fine_rec["workflow"], fine_rec["status"]) == ("untagged", "ok")

    paused = make_gateway(rules=[HEARTBEAT_RULE], workflows={"heartbeat": {"owner": "me"}})
    assert httpx.post(f"{paused.url}/-/pause/heartbeat", trust_env=False).status_code == 200
    with pytest.raises(openai.RateLimitError) as stopped:
        heartbeat(f"{paused.url}/openai")
    assert stopped.value.code == "workflow_paused"
    [rec] = paused.records(1)
    assert (rec["workflow"], rec["status"], rec["error_type"]) == ("heartbeat", "blocked", "workflow_paused")


def test_a_reload_takes_new_rules(sim: SimServer, tmp_path: Path) -> None:
    raw = gateway_config(sim.url, tmp_path)
    with daemon_process(raw, tmp_path) as (url, proc):
        heartbeat(f"{url}/openai")
        (tmp_path / "config.toml").write_text(
            (tmp_path / "config.toml").read_text() + "\n" + tomli_w.dumps({"rules": [HEARTBEAT_RULE]})
        )
        proc.send_signal(signal.SIGHUP)
        reloaded = patience_poll(lambda: status(url)["config"]["last_reload"])
        assert reloaded["ok"], reloaded
        heartbeat(f"{url}/openai")
        records = patience_poll(lambda: records_in(tmp_path / "logs", 2))
    assert [r["workflow"] for r in records] == ["untagged", "heartbeat"]
    assert [r["status"] for r in records] == ["ok", "ok"]


def status(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/-/status", trust_env=False).json()
    return answer


def records_in(log_dir: Path, count: int) -> list[dict[str, Any]] | None:
    lines = [line for f in sorted(log_dir.glob("usage-*.jsonl")) for line in f.read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]
    records = [r for r in records if not r["canary"]]
    return records if len(records) >= count else None


def patience_poll(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """probe() once it gives something, polled until a deadline."""
    deadline = time.monotonic() + patience(timeout)
    while (got := probe()) is None:
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)
    return got
