"""Alerts: what happened, how bad it is, and what to do. Pure data; delivery lives elsewhere.

Every kind the daemon can raise is listed in `Kind`, and the runbook has a section for each
(a test holds the two together).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    BUDGET_THRESHOLD = "budget_threshold"
    BUDGET_BLOCKED = "budget_blocked"
    DISK_LOW = "disk_low"
    RECORDS_DROPPED = "records_dropped"
    UNPRICED_MODEL = "unpriced_model"
    SPIKE = "spike"
    RUNAWAY = "runaway"
    DUPLICATE_STORM = "duplicate_storm"
    ERROR_RATE = "error_rate"
    CANARY_FAILED = "canary_failed"
    CANARY_RECOVERED = "canary_recovered"
    SLO_BURN_FAST = "slo_burn_fast"
    SLO_BURN_SLOW = "slo_burn_slow"
    DATABASE_REBUILT = "database_rebuilt"
    AGENT_LOOP = "agent_loop"
    BUDGET_DOWNGRADE = "budget_downgrade"
    FALLBACK = "fallback"


class Severity(StrEnum):
    CRITICAL = "critical"  # money or records are being lost, or calls refused: sent even in quiet hours
    WARNING = "warning"
    INFO = "info"


SEVERITY = {
    Kind.BUDGET_THRESHOLD: Severity.WARNING,
    Kind.BUDGET_BLOCKED: Severity.CRITICAL,
    Kind.DISK_LOW: Severity.WARNING,
    Kind.RECORDS_DROPPED: Severity.CRITICAL,
    Kind.UNPRICED_MODEL: Severity.WARNING,
    Kind.SPIKE: Severity.WARNING,
    Kind.RUNAWAY: Severity.CRITICAL,
    Kind.DUPLICATE_STORM: Severity.WARNING,
    Kind.ERROR_RATE: Severity.WARNING,
    Kind.CANARY_FAILED: Severity.WARNING,
    Kind.CANARY_RECOVERED: Severity.INFO,
    Kind.SLO_BURN_FAST: Severity.CRITICAL,  # at this rate a month's error budget is gone in two days
    Kind.SLO_BURN_SLOW: Severity.WARNING,
    Kind.DATABASE_REBUILT: Severity.WARNING,
    Kind.AGENT_LOOP: Severity.CRITICAL,  # money going now, each call dearer than the last; no human chats this fast
    Kind.BUDGET_DOWNGRADE: Severity.WARNING,  # calls go on, on the cheaper model
    Kind.FALLBACK: Severity.WARNING,  # calls go on, on the other provider
}

# Kinds that describe a condition: they are told again as "over" once it has passed.
ONGOING = frozenset(
    {Kind.SPIKE, Kind.RUNAWAY, Kind.DUPLICATE_STORM, Kind.ERROR_RATE, Kind.DISK_LOW, Kind.FALLBACK}
    | {Kind.SLO_BURN_FAST, Kind.SLO_BURN_SLOW}
)


@dataclass(frozen=True, slots=True)
class Alert:
    kind: Kind
    key: str  # the same situation again has the same key, so it can be told once
    message: str  # whole sentences: what happened, the numbers, what to do
    at: datetime
    scope: str = ""  # "global", "workflow:NAME", "provider:NAME", "probe:NAME" or "" for the daemon itself

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    @property
    def workflow(self) -> str | None:
        return self.scope.removeprefix("workflow:") if self.scope.startswith("workflow:") else None

    def as_dict(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "severity": str(self.severity),
            "key": self.key,
            "scope": self.scope,
            "at": self.at.astimezone(zone).isoformat(timespec="seconds"),
            "message": self.message,
        }
