"""The real `picometer` command in a subprocess."""

from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.cli import run
from tests.servers import GatewayServer, free_port

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "water the basil"}]}


def test_help_lists_the_commands() -> None:
    out = run("--help").stdout
    for command in ("run", "check", "init", "status", "report", "pause", "resume", "prices", "runbook", "demo"):
        assert f"  {command} " in out


def test_check_masks_secrets_and_shows_the_effective_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[providers.openai]\napi_key = "env:OPENAI_API_KEY"\n[providers.local]\napi_key = "sk-literal-9999"\n'
    )
    p = run("check", "--config", str(cfg), env={"OPENAI_API_KEY": "sk-very-secret-1234"})
    assert p.returncode == 0, p.stderr
    assert "sk-very-secret-1234" not in p.stdout + p.stderr and "sk-literal-9999" not in p.stdout + p.stderr
    assert "env:OPENAI_API_KEY -> resolved (19 characters, not shown)" in p.stdout
    assert "WARNING a literal secret" in p.stdout and "***masked***" in p.stdout
    assert 'listen = "127.0.0.1:8787"' in p.stdout


def test_check_never_shows_a_client_key_in_full(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[server]\nclient_keys = ["pm-client-key-0123456789"]\n[workflows.bot]\nkeys = ["pm-bot-key-abcdefghijk"]\n'
    )
    p = run("check", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert "pm-client-key-0123456789" not in p.stdout and "pm-bot-key-abcdefghijk" not in p.stdout
    assert "pm-***6789 (24 characters)" in p.stdout and "pm-***hijk" in p.stdout


def test_a_config_error_never_echoes_a_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nclient_keys = "pm-typed-as-a-string-0000"\n')
    p = run("check", "--config", str(cfg))
    assert p.returncode == 2 and "[server].client_keys" in p.stderr
    assert "pm-typed-as-a-string-0000" not in p.stdout + p.stderr and "not shown" in p.stderr


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[budgets]\non_exceed = "explode"\n')
    for command in ("check", "run"):
        p = run(command, "--config", str(cfg))
        assert p.returncode == 2
        assert "[budgets].on_exceed" in p.stderr and '"block", "alert"' in p.stderr
    p = run("check", env={"PICOMETER_CONFIG": str(tmp_path / "missing.toml")})
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_missing_secret_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[providers.openai]\napi_key = "env:NOT_SET_ANYWHERE"\n')
    p = run("check", "--config", str(cfg))
    assert p.returncode == 2 and "providers.openai.api_key" in p.stderr and "NOT_SET_ANYWHERE" in p.stderr


def test_init_writes_a_config_that_checks(tmp_path: Path) -> None:
    out = tmp_path / "new.toml"
    p = run("init", "--out", str(out), "--provider", "openai", "--provider", "ollama", "--daily-usd", "2")
    assert p.returncode == 0, p.stderr
    checked = run("check", "--config", str(out), env={"OPENAI_API_KEY": "sk-x"})
    assert checked.returncode == 0, checked.stderr
    assert "daily_usd = 2.0" in checked.stdout and "free = true" in checked.stdout
    again = run("init", "--out", str(out))
    assert again.returncode != 0 and "--force" in again.stderr


def test_prices_known_and_unknown() -> None:
    p = run("prices", "gpt-4o-mini")
    assert p.returncode == 0
    rows = {line.split("$")[0].strip(): line.split()[-4:] for line in p.stdout.splitlines() if "$" in line}
    header = p.stdout.splitlines()[1].split()
    assert header[:2] == ["standard", "priority"] and "batch" in header
    # openai.com/api/pricing, gpt-4o-mini: $0.15 in, $0.60 out; Priority $0.25 / $1.00; Batch $0.075 / $0.30
    assert rows["input"][:2] == ["$0.1500", "$0.2500"] and rows["output"][:2] == ["$0.6000", "$1.0000"]
    assert rows["input"][-1] == "$0.0750" and rows["output"][-1] == "$0.3000"
    assert "genai-prices:openai/gpt-4o-mini" in p.stdout
    assert "web search          $0.0100 a call" in p.stdout and "openai.com/api/pricing" in p.stdout
    a = run("prices", "claude-haiku-4-5", "--provider", "anthropic")
    assert a.returncode == 0 and "cache write 5m" in a.stdout and "cache write 1h" in a.stdout
    # anthropic.com/pricing, Claude Haiku 4.5: $1 in, 5-minute writes $1.25, 1-hour writes $2
    assert "$1.2500" in a.stdout and "$2.0000" in a.stdout
    found = run("prices", "claude-haiku-4-5")
    assert found.returncode == 0 and found.stdout.startswith("claude-haiku-4-5 on anthropic,"), "found by its model"
    image = run("prices", "dall-e-3")
    assert image.returncode == 0 and "dall-e-3: priced per call on images/generations" in image.stdout
    u = run("prices", "my-own-model")
    assert u.returncode == 1 and '[prices."my-own-model"]' in u.stderr


def test_status_up_and_down(gateway: GatewayServer, tmp_path: Path) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n')
    up = run("status", "--config", str(cfg))
    assert up.returncode == 0 and "requests 0" in up.stdout
    js = run("status", "--json", "--config", str(cfg))
    assert '"requests": 0' in js.stdout
    cfg.write_text('[server]\nlisten = "127.0.0.1:1"\n')
    down = run("status", "--config", str(cfg))
    assert down.returncode == 1 and "down" in down.stderr


def test_status_sends_the_admin_token_when_one_is_set(make_gateway: Any, tmp_path: Path) -> None:
    gw = make_gateway(server={"admin_token": "env:PM_ADMIN"}, env={"PM_ADMIN": "admin-token-for-status"})
    port = gw.url.rsplit(":", 1)[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_token = "env:PM_ADMIN"\n')
    up = run("status", "--config", str(cfg), env={"PM_ADMIN": "admin-token-for-status"})
    assert up.returncode == 0 and "requests 0" in up.stdout, up.stderr
    wrong = run("status", "--config", str(cfg), env={"PM_ADMIN": "not-the-token"})
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip() == "picometer refused: this control route needs [server].admin_token as a Bearer token"


def test_demo_meters_synthetic_traffic(tmp_path: Path) -> None:
    p = run("demo", "--seconds", "3", "--dir", str(tmp_path / "demo"), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "today:" in p.stdout and "p95 ms" in p.stdout
    for name in ("summarizer", "telegram-bot", "nightly-report", "untagged", "gpt-4o-mini", "claude-haiku-4-5"):
        assert name in p.stdout
    logs = list((tmp_path / "demo" / "logs").glob("usage-*.jsonl"))
    assert logs and logs[0].read_text().count("\n") > 5
    [csv] = (tmp_path / "demo" / "exports").glob("picometer-*.csv")
    assert f"the weekly CSV (written every Monday at 00:10; this week's so far): {csv}" in p.stdout
    assert "  week,date,workflow,env,provider,model,requests" in p.stdout, "its first lines are shown"
    alerts = [line for line in p.stdout.splitlines() if line.startswith("alert ")]
    assert len(alerts) == len(set(alerts)) and "level=warning" not in p.stdout + p.stderr, "each alert once"
    assert "by hand; the daemon counted" in p.stdout
    assert f"{Path(sys.executable).parent / 'picometer'} report --config" in p.stdout, "a hint that works as printed"


def test_pause_with_the_daemon_down_and_no_writable_state_fails_clearly(tmp_path: Path) -> None:
    port = free_port()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\ndata_dir = "{blocker / "data"}"\n')
    p = run("pause", "nightly", "--config", str(cfg))
    assert p.returncode == 1 and "cannot be written" in p.stderr and "Traceback" not in p.stderr


def test_status_reads_the_same_from_the_cli_and_the_bot(gateway: GatewayServer, tmp_path: Path) -> None:
    """Both render the same /-/status answer with the same lines: the same numbers, the same words."""
    import asyncio

    from picometer.watch.commands import Commands

    answer = httpx.post(f"{gateway.url}/openai/chat/completions", json=CHAT, trust_env=False)
    [rec] = gateway.records(1)
    assert (rec["status"], rec["usage_source"]) == ("ok", "provider") and rec["cost_usd"] > 0
    assert rec["input_tokens"] == answer.json()["usage"]["prompt_tokens"]
    httpx.post(f"{gateway.url}/-/pause/nightly?for=1h&force=1", trust_env=False)
    port = gateway.url.rsplit(":", 1)[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n')
    cli = run("status", "--config", str(cfg)).stdout.splitlines()
    (bot,) = asyncio.run(Commands(gateway.daemon.ops).answer("/status", by="test"))
    lines = html.unescape(bot).splitlines()
    assert lines[1:] == cli[1:] and "PAUSED nightly until " in bot, "all but the uptime, which moves on"
    assert lines[0].split(" up ")[0] == cli[0].split(" up ")[0]
