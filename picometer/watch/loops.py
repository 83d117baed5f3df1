"""Agent loops: one workflow sending the same conversation again and again, each time longer. A person chatting
takes turns minutes apart; an agent stuck calling tools re-sends its whole growing context every few seconds,
and each call costs more than the last. Pure: records and their times in, alerts out; bounded memory.

A call counts toward a loop when its input is larger than the previous call's of the same conversation;
`[alerts].loop_calls` such calls within `[alerts].loop_window_s` raise one `agent_loop` alert."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from picometer.alert import Alert, Kind
from picometer.config import Config
from picometer.numbers import count, money
from picometer.record import Record

CONVERSATIONS_MAX = 2000  # conversations watched at once; the one seen longest ago is forgotten first


@dataclass(slots=True)
class Step:
    at: datetime
    input_tokens: int


@dataclass(slots=True)
class Conversation:
    """One conversation of one workflow, while it is being watched."""

    growing: deque[Step]  # the latest calls that were longer than the one before, at most loop_calls
    last_seen: datetime
    last_input: int = 0  # input tokens of the previous call that reported any
    calls: int = 0  # so far, growing or not
    tokens: int = 0
    cost: float = 0.0
    unpriced: bool = False  # a call without a known price: the cost so far is a floor


class Loops:
    def __init__(self, config: Config, max_conversations: int = CONVERSATIONS_MAX) -> None:
        self.config, self.max_conversations = config, max_conversations
        self._watched: OrderedDict[tuple[str, str], Conversation] = OrderedDict()  # least recently seen first

    def reconfigure(self, config: Config) -> None:
        old, self.config = self.config.alerts, config
        if (old.loop_calls, old.loop_window_s) != (config.alerts.loop_calls, config.alerts.loop_window_s):
            self._watched.clear()  # counted under other thresholds: start afresh

    def __len__(self) -> int:
        """Conversations watched now."""
        return len(self._watched)

    def observe(self, rec: Record, now: datetime) -> Alert | None:
        """Count one finished call; the alert when it completes a loop (on the hot path: a few dict updates)."""
        if rec.canary or rec.status == "blocked" or not rec.conversation:
            return None
        cfg = self.config.alerts
        window = timedelta(seconds=cfg.loop_window_s)
        self._forget_idle(now - window)
        key = (rec.workflow, rec.conversation)
        conv = self._watched.get(key)
        if conv is None:
            if len(self._watched) >= self.max_conversations:
                self._watched.popitem(last=False)
            conv = self._watched[key] = Conversation(deque(maxlen=cfg.loop_calls), now)
        else:
            self._watched.move_to_end(key)
            conv.last_seen = max(conv.last_seen, now)  # a clock stepping back does not make it look idle
        conv.calls += 1
        conv.tokens += rec.input_tokens + rec.output_tokens
        conv.cost += rec.cost_usd or 0.0
        conv.unpriced |= rec.cost_usd is None
        if rec.input_tokens <= 0:
            return None  # no usage reported (a failed call): neither longer nor shorter
        if rec.input_tokens > conv.last_input:
            conv.growing.append(Step(now, rec.input_tokens))
        conv.last_input = rec.input_tokens
        while conv.growing and conv.growing[0].at <= now - window:
            conv.growing.popleft()
        if len(conv.growing) < cfg.loop_calls:
            return None
        alert = self._alert(rec.workflow, rec.conversation, conv, now)
        conv.growing.clear()  # the next alert needs a whole new run; the cooldown keeps it quiet meanwhile
        return alert

    def _forget_idle(self, before: datetime) -> None:
        while self._watched:
            key, oldest = next(iter(self._watched.items()))
            if oldest.last_seen > before:
                return
            del self._watched[key]

    def _alert(self, workflow: str, conversation: str, conv: Conversation, now: datetime) -> Alert:
        first, last = conv.growing[0], conv.growing[-1]
        owner = self.config.workflows.get(workflow)
        who = f"Workflow {workflow}" + (f" (owner {owner.owner})" if owner and owner.owner else "")
        cost = money(conv.cost) + (" (some calls have no known price)" if conv.unpriced else "")
        scope = f"workflow:{workflow}"
        return Alert(
            Kind.AGENT_LOOP,
            f"{Kind.AGENT_LOOP}:{scope}:{conversation}",
            f"{who} looks stuck in an agent loop: {len(conv.growing)} calls of the same conversation (hash "
            f"{conversation}) in {span(now - first.at)}, each longer than the one before (input "
            f"{count(first.input_tokens)} → {count(last.input_tokens)} tokens). So far that conversation used "
            f"{count(conv.tokens)} tokens in {count(conv.calls)} calls and cost {cost}; every further call "
            f"costs more than the last. Do: pause it with /pause {workflow} 1h (or the button), then check the "
            "agent's tool results and its step limit.",
            now,
            scope,
        )


def span(delta: timedelta) -> str:
    """A short stretch of time for people: "45 s", "4 min 10 s"."""
    seconds = max(round(delta.total_seconds()), 0)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
