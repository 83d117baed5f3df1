"""The runbook is rendered from the real config, so it never lies."""

from __future__ import annotations

from pathlib import Path

from picometer.alert import SEVERITY, Kind
from picometer.config import config_from_dict
from picometer.runbook import render
from tests.cli import run

ROOT = Path(__file__).parent.parent


def test_the_shipped_runbook_is_the_rendering_of_the_defaults() -> None:
    shipped = (ROOT / "runbook" / "RUNBOOK.md").read_text(encoding="utf-8")
    assert shipped == render(config_from_dict({})), (
        "runbook/RUNBOOK.md is stale: regenerate it from picometer/runbook.md with the built-in defaults"
    )
    assert shipped.isascii(), "plain ASCII, readable on any terminal"


def test_picometer_runbook_uses_this_configs_values(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        """
[server]
listen = "127.0.0.1:9911"
admin_token = "credential:admin_token"
[storage]
data_dir = "/srv/pm/data"
log_dir = "/srv/pm/logs"
[providers.openai]
api_key = "credential:openai_api_key"
[providers.local]
base_url = "http://127.0.0.1:11434/v1"
free = true
[budgets]
timezone = "Europe/Berlin"
daily_usd = 5
[workflows.nightly]
daily_usd = 1
max_tokens_per_request = 2048
""",
        encoding="utf-8",
    )
    p = run("runbook", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert "${" not in text
    assert "curl -s http://127.0.0.1:9911/-/health" in text and f"from {cfg}" in text
    assert "/srv/pm/data/rollups.db" in text and "/srv/pm/data/state.db" in text and "/srv/pm/logs/usage-" in text
    assert "| providers.openai.api_key | systemd credential `openai_api_key`" in text
    assert "| server.admin_token | systemd credential `admin_token`" in text
    assert "| local | none: the client's own key is passed through |" in text
    assert "| everything | $5.00 | no cap | no cap | block |" in text
    assert "| workflow nightly | $1.00 | no cap | 2048 | block |" in text
    assert "Europe/Berlin" in text


def test_every_alert_kind_the_code_can_raise_has_a_runbook_section() -> None:
    text = render(config_from_dict({}))
    for kind in Kind:
        heading = f"### {kind} ({SEVERITY[kind]})"
        assert heading in text, f"the runbook needs a section for alert kind {kind}"
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        assert "Do:" in section, f"the {kind} section says what to do"


def test_the_runbook_of_the_example_config_shows_its_port_paths_and_secrets() -> None:
    example = ROOT / "config.example.toml"
    p = run("runbook", "--config", str(example))
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert f"from {example}" in text and "| listener | 127.0.0.1:8787 (loopback only) |" in text
    assert "curl -s http://127.0.0.1:8787/-/health" in text
    assert "/var/lib/picometer/rollups.db" in text and "/var/log/picometer/usage-*.jsonl" in text
    assert "/var/lib/picometer/exports" in text
    assert "| providers.openai.api_key | systemd credential `openai_api_key`" in text
    assert "| workflow summarizer | $1.00 | $20.00 | 2048 | block |" in text
