"""The page in a real headless Chromium, against the real daemon (a subprocess) with two weeks of calls in its
usage log and a few live ones through the official SDK to a loopback provider: it shows each workflow's spend and
cap and a chart, logs no console error, weighs under 100 KB on the wire, and its buttons pause and resume for real;
with an admin token it shows nothing before a login, refuses a wrong token, and sets a strict cookie.

PICOMETER_PAGE_SCREENSHOT=docs/page.png also saves what the browser shows (the README's picture)."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from picometer.numbers import money
from picometer.record import Record, rfc3339_ms
from picometer.store.usagelog import read_records
from tests.patience import patience
from tests.sdks import oa
from tests.servers import SimServer, daemon_process, gateway_config

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = [
    *("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"),
    *("--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000"),
]
ADMIN = "admin-token-for-the-browser-test"
# Each workflow's usual spend per day, and its caps: what a Pi running a few automations might see.
USUAL = {"news-digest": 0.34, "garden-sensors": 0.12, "telegram-bot": 0.08, "invoices-n8n": 0.05}
WORKFLOWS = {
    "news-digest": {"monthly_usd": 15.0},
    "garden-sensors": {"daily_usd": 0.5, "monthly_usd": 8.0},
    "picoclaw-heartbeat": {"daily_usd": 0.5, "on_exceed": "alert"},
    "telegram-bot": {"slo_target": 0.99, "slo_latency_s": 5.0},
}
HEARTBEAT_TODAY = 0.2499999  # just under half its daily cap: the live call crosses 50 % and raises an alert


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, DRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: run `sh scripts/test-deps.sh` (installs chromium, chromium-driver)"
        )
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.binary_location = str(CHROMIUM)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def backfill(log_dir: Path, now: datetime) -> list[Record]:
    """Thirteen days of calls and some of today's, in the daemon's own usage log: it replays them at start."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    records = []
    for days_ago in range(13, -1, -1):
        at = max(today, now - timedelta(hours=1)) if days_ago == 0 else today - timedelta(days=days_ago, hours=-12)
        spend = dict(USUAL, **({"picoclaw-heartbeat": HEARTBEAT_TODAY} if days_ago == 0 else {}))
        for i, (workflow, usual) in enumerate(spend.items()):
            wobble = 1 + 0.4 * (((days_ago + 1) * (i + 3)) % 5 - 2) / 2  # some days busier than others
            cost = usual * (wobble if workflow in USUAL else 1)
            records.append(
                Record(rfc3339_ms(at), uuid.uuid4().hex, workflow=workflow, provider="openai",
                       endpoint="chat/completions", model="gpt-4o-mini", status="ok", http_status=200,
                       input_tokens=int(cost * 4e6), output_tokens=int(cost * 4e5), usage_source="provider",
                       cost_usd=round(cost, 9), price_source="genai-prices:openai/gpt-4o-mini", latency_ms=900.0)
            )  # fmt: skip
    log_dir.mkdir(parents=True)
    name = f"usage-{now - timedelta(days=15):%Y%m%d-%H%M%S}.jsonl"
    (log_dir / name).write_text("".join(r.to_json() + "\n" for r in records))
    return records


def month_spend(log_dir: Path, now: datetime) -> dict[str, float]:
    """Each workflow's spend this month (UTC), from every record in the usage log (rotated files too)."""
    out: dict[str, float] = {}
    for rec, _ in read_records(log_dir):
        if rec["ts"][:7] == now.strftime("%Y-%m"):
            out[rec["workflow"]] = out.get(rec["workflow"], 0.0) + (rec["cost_usd"] or 0.0)
    return out


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + patience(timeout)
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return got


def chat(url: str, workflow: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise the garden sensors"}]}
    return httpx.post(f"{url}/w/{workflow}/openai/chat/completions", json=body, trust_env=False, timeout=10)


def heartbeat_alerted(url: str) -> dict[str, Any] | None:
    """/-/status once it lists the budget alert the heartbeat's live call raised."""
    status: dict[str, Any] = httpx.get(f"{url}/-/status", trust_env=False).json()
    return status if any(a["kind"] == "budget_threshold" for a in status["alerts"]) else None


def transfer(driver: WebDriver, origin: str) -> int:
    """Bytes on the wire for what the browser loaded since the log was last read (headers and bodies), checking
    that everything came from `origin`."""
    events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(origin) for u in urls), f"fetched from elsewhere: {urls}"
    return sum(int(e["params"]["encodedDataLength"]) for e in events if e["method"] == "Network.loadingFinished")


def row_text(driver: WebDriver, workflow: str) -> list[str]:
    button = driver.find_element(By.CSS_SELECTOR, f'button[name="workflow"][value="{workflow}"]')
    return [td.text for td in button.find_element(By.XPATH, "./ancestor::tr").find_elements(By.TAG_NAME, "td")]


def test_the_page_shows_spend_caps_and_a_chart_and_its_buttons_pause_for_real(
    browser: WebDriver, sim: SimServer, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    backfill(tmp_path / "logs", now)
    probe = {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini"}
    config = gateway_config(
        sim.url,
        tmp_path,
        budgets={"daily_usd": 3.0, "monthly_usd": 40.0, "timezone": "UTC"},
        workflows=WORKFLOWS,
        canary={"probes": [probe]},
    )
    with daemon_process(config, tmp_path) as (url, _):
        for workflow in ("garden-sensors", "news-digest", "picoclaw-heartbeat", "telegram-bot"):
            answer = oa(f"{url}/w/{workflow}/openai").chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Summarise the garden sensors"}]
            )
            assert answer.choices[0].message.content
        assert httpx.post(f"{url}/-/canary", trust_env=False, timeout=30).json()["ok"] is True
        status = wait_for(lambda: heartbeat_alerted(url), "the heartbeat's budget alert")
        month = month_spend(tmp_path / "logs", now)

        for kind in ("performance", "browser"):
            browser.get_log(kind)  # reading empties it: from here on, only this page
        browser.get(f"{url}/-/ui")
        assert browser.title.startswith("picometer:")
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
        size = transfer(browser, url)
        body = browser.execute_script("return performance.getEntriesByType('navigation')[0].decodedBodySize")
        assert 10_000 < body <= size <= 100_000, "the page and its headers, all there is to load"

        for cap in status["budgets"]:
            if cap["scope"].startswith("workflow:"):
                today, this_month = row_text(browser, cap["scope"].removeprefix("workflow:"))[1:3]
                cell = today if cap["period"] == "day" else this_month
                assert cell == f"{money(cap['spent_usd'])} of {money(cap['limit_usd'])}"
        for workflow in USUAL.keys() - {c["scope"].removeprefix("workflow:") for c in status["budgets"]}:
            assert row_text(browser, workflow)[2] == money(month[workflow])
        chart = browser.find_element(By.CSS_SELECTOR, "svg.chart")
        assert chart.is_displayed() and chart.size["height"] > 100
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect")) >= 14 * 4, "a bar per day and workflow"
        assert "budget_threshold" in browser.find_element(By.TAG_NAME, "body").text

        browser.find_element(By.CSS_SELECTOR, 'button[name="workflow"][value="garden-sensors"]').click()
        wait_for(lambda: "paused garden-sensors until resumed" in browser.page_source, "the pause")
        refused = chat(url, "garden-sensors")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "workflow_paused"
        if shot := os.environ.get("PICOMETER_PAGE_SCREENSHOT"):
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, height + 200)  # the window's frame takes some of it, even headless
            browser.save_screenshot(shot)
        browser.find_element(By.CSS_SELECTOR, 'button[name="workflow"][value="garden-sensors"]').click()
        wait_for(lambda: "resumed garden-sensors" in browser.page_source, "the resume")
        assert chat(url, "garden-sensors").status_code == 200
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_with_an_admin_token_nothing_shows_before_a_login_and_the_cookie_is_strict(
    browser: WebDriver, sim: SimServer, tmp_path: Path
) -> None:
    config = gateway_config(sim.url, tmp_path, server={"admin_token": "env:PM_ADMIN"})
    with daemon_process(config, tmp_path, {"PM_ADMIN": ADMIN}) as (url, _):
        assert chat(url, "garden-sensors").status_code == 200
        browser.delete_all_cookies()
        browser.get(f"{url}/-/ui")
        assert "garden-sensors" not in browser.page_source and "<svg" not in browser.page_source

        def log_in(token: str) -> None:
            browser.find_element(By.NAME, "token").send_keys(token)
            browser.find_element(By.CSS_SELECTOR, "form.login button").click()

        log_in(ADMIN[:-1])
        wait_for(lambda: "That is not the admin token" in browser.page_source, "the refusal")
        assert "garden-sensors" not in browser.page_source and browser.get_cookies() == []
        log_in(ADMIN)
        wait_for(lambda: "garden-sensors" in browser.page_source, "the page after the login")
        [session] = browser.get_cookies()
        assert session["name"] == "picometer_ui" and session["httpOnly"] is True and session["sameSite"] == "Strict"
        assert session["path"] == "/-/ui" and ADMIN not in session["value"]

        jar = {"picometer_ui": session["value"]}
        with httpx.Client(base_url=url, cookies=jar, trust_env=False, follow_redirects=False) as c:
            assert "garden-sensors" in c.get("/-/ui").text, "the session works outside the browser too"
            assert c.post("/-/ui/pause", data={"workflow": "garden-sensors"}).status_code == 403
        assert chat(url, "garden-sensors").status_code == 200, "the refused form paused nothing"
