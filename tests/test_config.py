"""Config: defaults, errors that name the key and the fix, secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from picometer.config import Config, ConfigError, config_from_dict, find_config_path, load_config, to_dict


def error_of(raw: dict) -> ConfigError:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    return info.value


def test_empty_config_is_the_documented_defaults() -> None:
    c = config_from_dict({})
    assert c == Config()
    assert c.server.listen == "127.0.0.1:8787" and c.server.default_provider == "openai"
    assert set(c.providers) == {"openai", "anthropic"}
    assert c.storage.log_max_bytes == 52_428_800 and c.budgets.alert_at == (0.5, 0.8, 1.0)


def test_example_config_is_valid_and_covers_every_key() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    c = load_config(example, resolve=False)
    assert "openai" in c.providers and c.canary.probes
    text = example.read_text()
    sections = dict(to_dict(Config()))
    for channel, values in sections.pop("notify").items():
        part = text.split(f"[notify.{channel}]", 1)[1].split("\n[")[0]
        for key in values:
            assert f"{key} =" in part, f"config.example.toml lacks [notify.{channel}].{key}"
    for section, values in sections.items():
        if isinstance(values, dict) and section not in ("providers", "prices", "workflows"):
            for key in values:
                if key == "probes":
                    assert "[[canary.probes]]" in text
                    continue
                assert f"{key} =" in text, f"config.example.toml lacks [{section}].{key}"


@pytest.mark.parametrize(
    ("raw", "key", "fix"),
    [
        ({"server": {"listn": "x"}}, "[server].listn", "known keys here: listen"),
        ({"sever": {}}, "[sever]", "known sections"),
        ({"server": {"listen": "localhost"}}, "[server].listen", "127.0.0.1:8787"),
        ({"server": {"listen": "0.0.0.0:8787"}}, "[server].listen", "client_keys"),
        ({"server": {"max_body_bytes": "big"}}, "[server].max_body_bytes", "write e.g. 10"),
        ({"server": {"default_provider": "mistral"}}, "[server].default_provider", "openai"),
        ({"budgets": {"daily_usd": True}}, "[budgets].daily_usd", "1.5"),
        ({"budgets": {"over_cap": "truncate"}}, "[budgets].over_cap", '"clamp", "reject"'),
        ({"budgets": {"on_exceed": "downgrade"}}, "[budgets].downgrade_to", "openai/gpt-4o-mini"),
        ({"budgets": {"downgrade_to": "gpt-4o-mini"}}, "[budgets].downgrade_to", "providers: anthropic, openai"),
        ({"providers": {"openai": {"fallback": ["mistral/small"]}}}, "[providers.openai].fallback[0]", "provider/"),
        ({"budgets": {"timezone": "Mars/Olympus"}}, "[budgets].timezone", "IANA"),
        ({"storage": {"store_prompts": "all"}}, "[storage].store_prompts", '"redacted"'),
        ({"storage": {"log_max_bytes": 10_000}}, "[storage].log_max_bytes", "4 x log_rotate_bytes"),
        (
            {"providers": {"x": {"kind": "bedrock"}}, "server": {"default_provider": "x"}},
            "[providers.x].kind",
            "openai",
        ),
        ({"providers": {"openai": {"base_url": "api.openai.com"}}}, "[providers.openai].base_url", "https://"),
        ({"providers": {"openai": {"first_byte_timeout_s": 0}}}, "[providers.openai].first_byte_timeout_s", "600"),
        ({"retry": {"circuit_failures": -1}}, "[retry].circuit_failures", "at least 0"),
        ({"workflows": {"bot": {"keys": ["secret"]}}}, "[workflows.bot].keys[0]", "pm-"),
        ({"workflows": {"bot": {"slo_target": 99}}}, "[workflows.bot].slo_target", "0.99"),
        ({"prices": {"m": {"input": -1}}}, '[prices."m"].input', "per 1M"),
        ({"canary": {"probes": [{"name": "a", "expect_regex": "("}]}}, "expect_regex", "fix the pattern"),
        ({"canary": {"probes": [{"name": "a", "max_latency_s": 0}]}}, "max_latency_s", "at least 0.1"),
        ({"canary": {"probes": [{"name": "a", "expect_json_keys": "status"}]}}, "expect_json_keys", "["),
        ({"alerts": {"quiet_hours": "late"}}, "[alerts].quiet_hours", "23:00-07:00"),
        ({"telegram": {"enabled": True}}, "[telegram].chat_ids", "chat_ids = ["),
    ],
)
def test_errors_name_the_key_and_the_fix(raw: dict, key: str, fix: str) -> None:  # type: ignore[type-arg]
    err = error_of(raw)
    assert err.key.startswith(key) or key in err.key, str(err)
    assert fix in str(err)


def test_non_loopback_listen_is_allowed_with_keys() -> None:
    c = config_from_dict({"server": {"listen": "0.0.0.0:8787", "client_keys": ["pm-0123456789abcdef"]}})
    assert c.server.host == "0.0.0.0"
    c2 = config_from_dict({"server": {"listen": "[::]:8787"}, "workflows": {"a": {"keys": ["sha256:" + "a" * 64]}}})
    assert c2.server.port == 8787


def test_workflow_keys_must_be_unique() -> None:
    err = error_of({"workflows": {"a": {"keys": ["pm-0123456789abcdef"]}, "b": {"keys": ["pm-0123456789abcdef"]}}})
    assert "[workflows.b].keys[0]" in str(err) and "[workflows.a]" in str(err)


def test_secret_references_env_file_and_credential(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk-from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "anthropic_key").write_text("sk-ant-cred")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"""
[providers.openai]
api_key = "env:MY_OPENAI"
[providers.anthropic]
kind = "anthropic"
base_url = "https://api.anthropic.com"
api_key = "credential:anthropic_key"
[providers.router]
base_url = "https://openrouter.ai/api/v1"
api_key = "file:{tmp_path / "key"}"
"""
    )
    c = load_config(cfg, {"MY_OPENAI": "sk-env", "CREDENTIALS_DIRECTORY": str(creds)})
    assert c.provider_key("openai").value == "sk-env"  # type: ignore[union-attr]
    assert c.provider_key("anthropic").value == "sk-ant-cred"  # type: ignore[union-attr]
    assert c.provider_key("router").value == "sk-from-file"  # type: ignore[union-attr]
    assert "sk-env" not in repr(c), "a secret never shows in a repr"
    with pytest.raises(ConfigError, match=r"providers.openai.api_key: environment variable MY_OPENAI is not set"):
        load_config(cfg, {"CREDENTIALS_DIRECTORY": str(creds)})
    with pytest.raises(ConfigError, match="anthropic_key does not exist"):
        load_config(cfg, {"MY_OPENAI": "x", "CREDENTIALS_DIRECTORY": str(tmp_path)})
    (creds / "anthropic_key").write_text("\n")  # the empty placeholder `make install` leaves
    with pytest.raises(ConfigError) as empty:
        load_config(cfg, {"MY_OPENAI": "x", "CREDENTIALS_DIRECTORY": str(creds)})
    assert str(empty.value) == (
        f"providers.anthropic.api_key: secret file {creds / 'anthropic_key'} is empty. Fix: put the secret in "
        "/etc/picometer/credentials/anthropic_key (mode 0600), then: sudo systemctl restart picometer"
    ), "under systemd the fix names the file the operator edits, not systemd's copy"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nlisten = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_path("x.toml", {"PICOMETER_CONFIG": "y.toml"}) == Path("x.toml")
    assert find_config_path(None, {"PICOMETER_CONFIG": "y.toml"}) == Path("y.toml")
    (tmp_path / "config.toml").write_text("")
    found = find_config_path(None, {})
    assert found is not None and found.name == "config.toml"
