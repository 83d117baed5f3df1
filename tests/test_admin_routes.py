"""The control routes answer from one table: each route's methods, its guard and its answer."""

from __future__ import annotations

import httpx

from tests.servers import GatewayServer


def test_each_route_answers_its_methods_and_names_the_right_one(gateway: GatewayServer) -> None:
    get = lambda path: httpx.get(f"{gateway.url}{path}", trust_env=False)  # noqa: E731
    assert get("/-/health").json() == {"status": "ok"}
    assert get("/-/status").status_code == 200 and "spend_usd" in get("/-/status").json()
    wrong = get("/-/pause/cat")
    assert wrong.status_code == 405 and wrong.json()["error"]["message"] == "use POST for /-/pause/WORKFLOW"
    assert get("/-/canary").json()["error"]["message"] == "use POST for /-/canary"
    missing = get("/-/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    unnamed = httpx.post(f"{gateway.url}/-/pause/", trust_env=False)
    assert unnamed.status_code == 400 and "name a workflow" in unnamed.json()["error"]["message"]
    typo = httpx.post(f"{gateway.url}/-/pause/cat?for=1h", trust_env=False)
    assert typo.status_code == 404 and typo.json()["error"]["code"] == "unknown_workflow", "no call yet from cat"
    paused = httpx.post(f"{gateway.url}/-/pause/cat?for=1h&force=1", trust_env=False).json()
    assert paused["paused"] is True and paused["saved"] is True and paused["until"].endswith("Z")
    resumed = httpx.post(f"{gateway.url}/-/resume/cat", trust_env=False).json()
    assert resumed == {"workflow": "cat", "paused": False, "was_paused": True, "saved": True}
