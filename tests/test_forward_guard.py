"""The one timer per call (proxy._forward_guarded): a hang-up becomes ClientGone, total_timeout_s a 504, both at
once the hang-up; each takes back only the cancellation it made, so a cancel from elsewhere (a server shutting
down) still ends the call."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from picometer.gateway.body import ClientGone
from picometer.gateway.proxy import Proxy
from picometer.gateway.refusals import Refusal
from picometer.gateway.settle import Outcome

TOTAL = 0.2


def guarded(hang_up_at: float | None = None, cancel_at: float | None = None) -> tuple[str, int, str | None]:
    """(how the call ended, the task's pending cancellations after, the outcome's cut) for a provider that never
    answers and a clean-up that takes 50 ms, with the client leaving and an outside cancel at those times."""

    async def scenario() -> tuple[str, int, str | None]:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        leaving: asyncio.Future[dict[str, Any]] = loop.create_future()
        if hang_up_at is not None:
            loop.call_later(hang_up_at, lambda: leaving.set_result({"type": "http.disconnect"}))
        if cancel_at is not None:
            loop.call_later(cancel_at, task.cancel)

        async def receive() -> dict[str, Any]:
            return await asyncio.shield(leaving)

        async def forward(*args: Any) -> None:
            try:
                await asyncio.sleep(5)
            finally:
                await asyncio.sleep(0.05)  # closing the upstream response

        proxy = Proxy.__new__(Proxy)
        proxy._forward = forward  # type: ignore[method-assign]
        req: Any = types.SimpleNamespace(
            provider=types.SimpleNamespace(total_timeout_s=TOTAL), route=types.SimpleNamespace(provider="p")
        )
        o = Outcome()
        try:
            await proxy._forward_guarded(req, o, {}, receive, None, None)  # type: ignore[arg-type]
            ended = "returned"
        except ClientGone:
            ended = "client gone"
        except Refusal as r:
            ended = f"{r.status} {r.code}"
        except asyncio.CancelledError:
            ended = "cancelled"
        return ended, task.cancelling(), o.cut

    async def main() -> tuple[str, int, str | None]:
        return await asyncio.create_task(scenario())

    return asyncio.run(main())


def test_a_hang_up_is_client_gone() -> None:
    assert guarded(hang_up_at=0.1) == ("client gone", 0, None)


def test_total_timeout_is_a_504() -> None:
    assert guarded() == ("504 upstream_timeout", 0, "timeout")


@pytest.mark.parametrize("at", [TOTAL + 0.01, TOTAL + 0.03])
def test_a_hang_up_while_a_timeout_unwinds_takes_back_both_cancellations(at: float) -> None:
    ended, pending, _ = guarded(hang_up_at=at)
    assert (ended, pending) == ("client gone", 0)


@pytest.mark.parametrize("at", [TOTAL + 0.01, TOTAL + 0.03])
def test_a_cancel_from_elsewhere_while_a_timeout_unwinds_still_cancels(at: float) -> None:
    ended, pending, _ = guarded(cancel_at=at)
    assert (ended, pending) == ("cancelled", 1)
