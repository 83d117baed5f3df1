"""Canary probes: a tiny fixed prompt per configured model, sent through picometer's own listener on a
schedule, so the whole path (gateway, provider, key, model) is proven to answer, in time and in format.

Probes are recorded like any call (workflow "canary", canary = true) and count in spend. `fail_after`
failed runs in a row raise canary_failed; the first pass after that raises canary_recovered.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import httpx
import structlog

from picometer.alert import Alert, Kind
from picometer.clock import Clock
from picometer.config import Config, ProbeConfig
from picometer.gateway.admission import CANARY_HEADER
from picometer.store.state import Failures, State

log = structlog.get_logger("picometer.canary")

CANARY_WORKFLOW = "canary"
FIRST_RUN_S = (5.0, 30.0)  # the first run after start, jittered: soon enough to see, not all Pis at once
MAX_SLEEP_S = 300.0  # the schedule is looked at again at least this often, so a wall-clock jump is noticed
ANSWER_SHOWN = 60  # characters of an answer quoted in a result
HELD_BACK = frozenset({"budget_exceeded", "workflow_paused"})  # picometer's own refusals: not the provider's fault
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class Result:
    probe: str
    provider: str
    model: str
    outcome: str  # "pass", "fail" or "skipped" (refused by picometer itself: a budget or a pause)
    detail: str  # what was wrong, or what it answered
    at: datetime
    latency_s: float | None = None
    cost_usd: float | None = None
    http_status: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome != "fail"

    def as_dict(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "provider": self.provider,
            "model": self.model,
            "outcome": self.outcome,
            "detail": self.detail,
            "at": self.at.astimezone(zone).isoformat(timespec="seconds"),
            "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
            "cost_usd": self.cost_usd,
            "http_status": self.http_status,
        }


# ---------------------------------------------------------------- pure parts


def probe_request(probe: ProbeConfig, kind: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(path under /w/canary/{provider}/, JSON body, headers) for a probe in its provider's own API."""
    messages = [{"role": "user", "content": probe.prompt}]
    body = {"model": probe.model, "max_tokens": probe.max_tokens, "messages": messages}
    if kind == "anthropic":
        return "v1/messages", body, {"anthropic-version": ANTHROPIC_VERSION}
    return "chat/completions", body, {}


def answer_text(kind: str, data: Any) -> str | None:
    """The text of a chat answer, or None when the body has none where the API puts it."""
    try:
        if kind == "anthropic":
            blocks = [b["text"] for b in data["content"] if b.get("type") == "text"]
            return "".join(blocks) if blocks else None
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return content if isinstance(content, str) else None


def _error_of(body: bytes) -> tuple[str, str]:
    """(code, message) from an OpenAI- or Anthropic-shaped error body; empty when it is neither."""
    try:
        error = json.loads(body)["error"]
        return str(error.get("code") or error.get("type") or ""), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", ""


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return json.dumps(text[:ANSWER_SHOWN] + ("…" if len(text) > ANSWER_SHOWN else ""), ensure_ascii=False)


def _json_object(text: str) -> dict[str, Any] | None:
    """The answer as a JSON object; a Markdown code fence around it is allowed (models add them)."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def judge(probe: ProbeConfig, kind: str, status: int, body: bytes, latency_s: float) -> tuple[str, str]:
    """(outcome, detail) of one probe answer: success, expected text, expected JSON keys, in time."""
    if status != 200:
        code, message = _error_of(body)
        if code in HELD_BACK:
            return "skipped", f"not sent, picometer refused it: {message}"
        return "fail", f"HTTP {status}" + (f" {code}: {message}" if code or message else "")
    try:
        data = json.loads(body)
    except ValueError:
        return "fail", "the answer is not JSON"
    text = answer_text(kind, data)
    if text is None:
        return "fail", "the answer has no text"
    if not re.search(probe.expect_regex, text):
        return "fail", f"answer {_shown(text)} does not match /{probe.expect_regex}/"
    if probe.expect_json_keys:
        obj = _json_object(text)
        if obj is None:
            return "fail", f"answer {_shown(text)} is not a JSON object"
        missing = [k for k in probe.expect_json_keys if k not in obj]
        if missing:
            return "fail", f"answer lacks the JSON keys {', '.join(missing)}"
    if latency_s > probe.max_latency_s:
        return "fail", f"took {latency_s:.1f} s, over max_latency_s = {probe.max_latency_s:g}"
    return "pass", f"answered {_shown(text)} in {latency_s:.1f} s"


def table(results: list[dict[str, Any]]) -> str:
    """Results for people (CLI and /canary): one line per probe."""
    lines = []
    for r in results:
        latency = "-" if r["latency_s"] is None else f"{r['latency_s']:.2f}s"
        cost = "-" if r["cost_usd"] is None else f"${r['cost_usd']:.6f}"
        mark = {"pass": "PASS", "fail": "FAIL", "skipped": "SKIP"}[r["outcome"]]
        lines.append(f"{mark} {r['probe']} ({r['provider']} {r['model']}) {latency} {cost}: {r['detail']}")
    return "\n".join(lines)


class Schedule:
    """When the next run is due: on wall-clock multiples of the interval (on the hour for 3600 s), so
    runs never drift; after a jittered first run. A clock that jumps forward gives one run at once, not
    a burst for every missed slot; one that jumps back waits for the next boundary."""

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at  # monotonic time of the first run
        self.last_slot: int | None = None

    def delay(self, now_ts: float, mono: float, interval_s: float) -> float:
        """Seconds until the next run; zero or less: run now."""
        if self.last_slot is None:
            return self.first_at - mono
        slot = int(now_ts // interval_s)
        if slot < self.last_slot:  # the wall clock went back (NTP after a boot without RTC): this slot is done
            self.last_slot = slot
        if slot > self.last_slot:
            return 0.0
        return (slot + 1) * interval_s - now_ts

    def ran(self, now_ts: float, interval_s: float) -> None:
        self.last_slot = int(now_ts // interval_s)


# ---------------------------------------------------------------- the runner


class Canary:
    """Runs the probes (one run at a time), keeps the last results, and raises the alerts."""

    def reconfigure(self, config: Config) -> None:
        self.config = config

    def __init__(
        self,
        config: Config,
        state: State,
        clock: Clock,
        zone: tzinfo,
        alert: Callable[[Alert], None],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.state = state
        self.zone = zone
        self.clock = clock
        self._alert = alert
        self.token = secrets.token_hex(16)
        self.schedule = Schedule(clock.monotonic() + FIRST_RUN_S[0] + rand() * (FIRST_RUN_S[1] - FIRST_RUN_S[0]))
        self.last: dict[str, Result] = {}
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    def connect(self, base_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """Where picometer itself listens (or, for `picometer canary` with no daemon, the app in-process)."""
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, trust_env=False)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def loop(self) -> None:
        """The schedule, forever: sleeps until the next slot, never busy; runs never overlap."""
        while True:
            interval = self.config.canary.interval_s
            wait = self.schedule.delay(self.clock.now().timestamp(), self.clock.monotonic(), interval)
            if wait > 0:
                await asyncio.sleep(min(wait, MAX_SLEEP_S))
                continue
            self.schedule.ran(self.clock.now().timestamp(), interval)
            if self.config.canary.probes:
                try:
                    await self.run()
                except Exception:  # a bug in one run must not stop the schedule
                    log.exception("canary run failed")

    async def run(self) -> list[Result]:
        """Every probe once, in order; a run asked for while one is going waits for it to finish."""
        async with self._lock:
            results = []
            for probe in self.config.canary.probes:
                result = await self._probe(probe)
                self._settle(probe, result)
                results.append(result)
            return results

    async def _probe(self, probe: ProbeConfig) -> Result:
        assert self._client is not None, "connect() first"
        provider = self.config.providers.get(probe.provider)
        kind = provider.kind if provider is not None else "openai"
        path, body, headers = probe_request(probe, kind)
        headers[CANARY_HEADER] = self.token
        at = self.clock.now()
        t0 = self.clock.monotonic()
        url = f"/w/{CANARY_WORKFLOW}/{probe.provider}/{path}"
        try:
            response = await self._client.post(url, json=body, headers=headers, timeout=probe.max_latency_s + 10)
        except httpx.TimeoutException:
            latency = self.clock.monotonic() - t0
            return Result(probe.name, probe.provider, probe.model, "fail", f"no answer within {latency:.0f} s", at)
        except httpx.TransportError as e:
            detail = f"picometer's own listener did not answer: {e}"
            return Result(probe.name, probe.provider, probe.model, "fail", detail, at)
        latency = self.clock.monotonic() - t0
        outcome, detail = judge(probe, kind, response.status_code, response.content, latency)
        cost = response.headers.get("x-picometer-cost-usd")
        return Result(
            probe.name,
            probe.provider,
            probe.model,
            outcome,
            detail,
            at,
            latency,
            float(cost) if cost and cost != "unknown" else None,
            response.status_code,
        )

    def _settle(self, probe: ProbeConfig, result: Result) -> None:
        """Count the run of failures (kept in state.db across restarts) and raise what it means."""
        self.last[probe.name] = result
        log.info("canary", probe=probe.name, outcome=result.outcome, detail=result.detail)
        if result.outcome == "skipped":
            return
        before = self.state.probe(probe.name)
        if result.outcome == "pass":
            self.state.save_probe(probe.name, Failures())
            if before.told and before.since is not None:
                self._alert(self._recovered(probe, result, before))
            return
        failures = Failures(before.count + 1, before.since or result.at, before.told)
        if failures.count >= probe.fail_after:
            failures = Failures(failures.count, failures.since, True)
            self._alert(self._failed(probe, result, failures))
        self.state.save_probe(probe.name, failures)

    def _failed(self, probe: ProbeConfig, result: Result, failures: Failures) -> Alert:
        assert failures.since is not None
        return Alert(
            Kind.CANARY_FAILED,
            f"canary_failed:{probe.name}:{failures.since.timestamp():.0f}",  # one episode, one key
            f"Canary {probe.name} ({probe.provider} {probe.model}) failed {failures.count} runs in a row since "
            f"{failures.since.astimezone(self.zone):%H:%M}: {result.detail}. "
            "Calls to this model are likely failing too. "
            "Do: check the provider's status page and your key's quota; /canary runs it again now.",
            result.at,
            f"probe:{probe.name}",
        )

    def _recovered(self, probe: ProbeConfig, result: Result, before: Failures) -> Alert:
        assert before.since is not None
        lasted = result.at - before.since
        minutes = max(round(lasted.total_seconds() / 60), 1)
        return Alert(
            Kind.CANARY_RECOVERED,
            f"canary_recovered:{probe.name}:{before.since.timestamp():.0f}",
            f"Canary {probe.name} ({probe.provider} {probe.model}) passes again after {before.count} failed runs "
            f"over {minutes} min: {result.detail}.",
            result.at,
            f"probe:{probe.name}",
        )
