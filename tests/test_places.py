"""Files go where whoever runs picometer may write, and the commands that never call a provider need no key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import tomli_w

from picometer.config.load import with_default_places
from picometer.config.places import Places, default_places
from picometer.store.rollups import Rollups
from tests.cli import run
from tests.servers import GatewayServer, daemon_process, free_port, gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "summarize the night"}]}


def test_systemd_root_and_a_normal_user_each_get_their_own_places() -> None:
    unit = default_places({"STATE_DIRECTORY": "/var/lib/picometer", "LOGS_DIRECTORY": "/var/log/picometer"}, 999, "/")
    assert unit == Places("/var/lib/picometer", "/var/log/picometer", "/var/lib/picometer/exports")
    assert default_places({}, 0, "/root").data_dir == "/var/lib/picometer"
    me = default_places({}, 1000, "/home/ana")
    assert me == Places(
        "/home/ana/.local/state/picometer",
        "/home/ana/.local/state/picometer/logs",
        "/home/ana/.local/state/picometer/exports",
    )
    assert default_places({"XDG_STATE_HOME": "/srv/state"}, 1000, "/home/ana").log_dir == "/srv/state/picometer/logs"
    assert default_places({"STATE_DIRECTORY": "/a:/b"}, 0, "/").data_dir == "/a", "the first of several"


def test_what_the_file_says_wins_over_the_default_places() -> None:
    places = Places("/d", "/l", "/e")
    raw = with_default_places({"storage": {"log_dir": "/mine"}}, places)
    assert raw["storage"] == {"data_dir": "/d", "log_dir": "/mine"} and raw["export"] == {"dir": "/e"}


def test_reading_and_control_commands_run_without_the_provider_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "server": {"listen": "127.0.0.1:1"},  # no daemon there: the commands work from the files
                "storage": {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "logs")},
                "export": {"dir": str(tmp_path / "exports")},
                "providers": {"openai": {"kind": "openai", "api_key": "env:PM_UNSET_OPENAI_KEY"}},
            }
        )
    )
    Rollups(tmp_path / "data" / "rollups.db").close()  # a daemon ran here once
    args = ("--config", str(config))
    for command in (["report"], ["export"], ["prices", "gpt-4o-mini"], ["runbook"], ["pause", "nightly", "--force"]):
        done = run(*command, *args)
        assert done.returncode == 0, (command, done.stderr)
        assert "PM_UNSET_OPENAI_KEY" not in done.stderr
    assert run("resume", "nightly", *args).stdout.strip() == "resumed nightly"
    down = run("status", *args)
    assert down.returncode == 1 and "picometer is down" in down.stderr, "down, not a config error"
    check = run("check", *args)
    assert check.returncode == 2 and "PM_UNSET_OPENAI_KEY" in check.stderr, "check still names the missing key"


def test_a_port_in_use_and_an_unwritable_directory_each_stop_run_with_two_lines_and_no_traceback(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    taken = gateway.url.rsplit(":", 1)[1]
    config = tmp_path / "config.toml"
    dirs = {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "logs")}
    config.write_text(tomli_w.dumps({"server": {"listen": f"127.0.0.1:{taken}"}, "storage": dirs}))
    busy = run("run", "--config", str(config), timeout=30)
    assert busy.returncode == 2 and "Traceback" not in busy.stderr
    assert len(busy.stderr.strip().splitlines()) <= 2
    assert (
        f"127.0.0.1:{taken}" in busy.stderr and "picometer status" in busy.stderr and "[server].listen" in busy.stderr
    )

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    config.write_text(
        tomli_w.dumps(
            {
                "server": {"listen": f"127.0.0.1:{free_port()}"},
                "storage": {"data_dir": str(blocker / "data"), "log_dir": str(tmp_path / "logs")},
            }
        )
    )
    for command in ("run", "check"):
        done = run(command, "--config", str(config), timeout=30)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2
        assert str(blocker / "data") in done.stderr and "[storage].data_dir" in done.stderr


def test_a_pause_of_a_name_never_seen_is_refused_with_the_known_names_unless_forced(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    httpx.post(f"{gateway.url}/w/nightly-report/openai/chat/completions", json=CHAT, trust_env=False)
    [rec] = gateway.records(1)
    assert (rec["workflow"], rec["status"], rec["usage_source"]) == ("nightly-report", "ok", "provider")
    gateway.tick()  # the call is in the rollups
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{gateway.url.rsplit(":", 1)[1]}"\n')
    typo = run("pause", "nightly-reprot", "--config", str(config))
    assert typo.returncode == 1 and "not paused" in typo.stderr
    assert "known: nightly-report" in typo.stderr and "Did you mean 'nightly-report'?" in typo.stderr
    assert "picometer pause nightly-reprot --force" in typo.stderr
    assert httpx.get(f"{gateway.url}/-/status", trust_env=False).json()["pauses"] == []
    ahead = run("pause", "weekend-job", "--force", "--config", str(config))
    assert ahead.returncode == 0 and ahead.stdout.startswith("paused weekend-job until resumed")


def test_run_simulate_serves_an_sdk_call_without_keys_and_records_it(tmp_path: Path) -> None:
    raw = gateway_config("http://127.0.0.1:1", tmp_path)  # no provider reachable, no key set
    raw["providers"]["openai"]["api_key"] = "env:PM_UNSET_OPENAI_KEY"
    with daemon_process(raw, tmp_path, args=("--simulate",)) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/openai", api_key="sim", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        hint = (tmp_path / "daemon.out").read_text()
    assert answer.usage is not None and answer.choices[0].message.content
    assert f'OpenAI(base_url="{url}/openai", api_key="sim")' in hint and f"curl -s {url}/openai/chat" in hint
    assert f'Anthropic(base_url="{url}/anthropic", api_key="sim")' in hint
    [rec] = [json.loads(line) for f in (tmp_path / "logs").glob("usage-*.jsonl") for line in f.open()]
    assert (rec["status"], rec["usage_source"], rec["provider"]) == ("ok", "provider", "openai")
    assert rec["input_tokens"] == answer.usage.prompt_tokens and rec["output_tokens"] == answer.usage.completion_tokens
    assert rec["cost_usd"] > 0


def test_a_report_of_sub_cent_spends_shows_significant_digits(gateway: GatewayServer, tmp_path: Path) -> None:
    for _ in range(3):
        httpx.post(f"{gateway.url}/w/garden/openai/chat/completions", json=CHAT, trust_env=False)
    records = gateway.records(3)
    assert [r["status"] for r in records] == ["ok"] * 3 and all(0 < r["cost_usd"] < 0.01 for r in records)
    gateway.tick()
    config = tmp_path / "c.toml"
    storage = gateway.config.storage
    config.write_text(tomli_w.dumps({"storage": {"data_dir": storage.data_dir, "log_dir": storage.log_dir}}))
    out = run("report", "--config", str(config)).stdout
    [garden] = [line for line in out.splitlines() if line.startswith("garden")]
    cost = garden.split()[-3]  # e.g. $0.000021: gpt-4o-mini calls cost a few millionths of a dollar
    assert cost.startswith("$0.0000") and len(cost.split(".")[1].lstrip("0")) >= 2, garden
