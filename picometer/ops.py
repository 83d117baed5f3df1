"""What a person can do to picometer, done once for every face: the HTTP admin routes, the CLI (through the
daemon, or over its state file when it is down) and the Telegram bot all call these and render the result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from picometer.record import rfc3339_ms
from picometer.store.state import NotSaved, State

log = structlog.get_logger("picometer.ops")


@dataclass(frozen=True, slots=True)
class Switched:
    """A pause or resume, as it now stands."""

    workflow: str
    paused: bool
    until: datetime | None = None  # a pause's end; None: until resumed
    by: str | None = None
    was_paused: bool = False  # a resume: whether there was a pause to lift
    warning: str | None = None  # the state file could not keep it: in force until picometer restarts

    @property
    def saved(self) -> bool:
        return self.warning is None

    def as_dict(self) -> dict[str, Any]:
        """The answer of POST /-/pause and /-/resume."""
        out: dict[str, Any] = {"workflow": self.workflow, "paused": self.paused}
        if self.paused:
            out["until"] = rfc3339_ms(self.until) if self.until else None
            out["by"] = self.by
        else:
            out["was_paused"] = self.was_paused
        out["saved"] = self.saved
        if self.warning is not None:
            out["warning"] = self.warning
        return out


def pause(state: State, workflow: str, until: datetime | None, by: str, now: datetime) -> Switched:
    """Stop a workflow's calls (429 workflow_paused) until `until` or a resume. It holds at once, even when
    the state file cannot keep it; the result says so."""
    warning = None
    try:
        state.pause(workflow, until, by, now)
    except NotSaved as e:
        warning = str(e)
        log.error("pause state not saved", error=warning)
    log.warning("workflow paused", workflow=workflow, until=until and until.isoformat(), by=by)
    return Switched(workflow, True, until, by, warning=warning)


def resume(state: State, workflow: str, by: str, now: datetime) -> Switched:
    """Let a workflow's calls through again."""
    was, warning = state.paused(workflow, now) is not None, None
    try:
        state.resume(workflow)
    except NotSaved as e:
        warning = str(e)
        log.error("pause state not saved", error=warning)
    log.info("workflow resumed", workflow=workflow, was_paused=was, by=by)
    return Switched(workflow, False, by=by, was_paused=was, warning=warning)
