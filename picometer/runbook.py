"""`picometer runbook`: the runbook filled with this config's real ports, paths and secrets."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from string import Template

from picometer.config import DEFAULT_PATHS, Config, is_loopback, is_reference, secret_refs


def render(config: Config) -> str:
    s = config.storage
    data = Path(s.data_dir)
    values = {
        "config_path": config.source or str(DEFAULT_PATHS[0]),
        "base_url": config.server.url,
        "listen": config.server.listen,
        "exposure": "loopback only"
        if is_loopback(config.server.host)
        else "reachable from the network: client keys required",
        "providers_short": ", ".join(sorted(config.providers)) or "(none)",
        "log_dir": s.log_dir,
        "log_max": f"{s.log_max_bytes / 1_048_576:.0f} MiB",
        "retention_days": str(s.log_retention_days),
        "min_free_mb": str(s.min_free_mb),
        "rollups_db": str(data / "rollups.db"),
        "state_db": str(data / "state.db"),
        "export_dir": config.export.dir,
        "export_telegram": " and goes to the Telegram chats"
        if config.export.send_to_telegram and config.telegram.enabled
        else "",
        "timezone": config.budgets.timezone,
        "default_provider": config.server.default_provider,
        "secrets_table": _secrets(config),
        "budgets_table": _budgets(config),
        "alerts_db": str(data / "alerts.db"),
        "canary": ", ".join(f"{p.name} every {config.canary.interval_s:g} s" for p in config.canary.probes)
        or "none configured",
        "cooldown": f"{config.alerts.cooldown_s:g} s",
        "quiet": config.alerts.quiet_hours or "none set",
        "telegram": f"chats {', '.join(map(str, config.telegram.chat_ids))} via {config.telegram.api_base}"
        if config.telegram.enabled
        else "off",
    }
    return Template(files("picometer").joinpath("runbook.md").read_text(encoding="utf-8")).substitute(values)


def _secrets(config: Config) -> str:
    rows = ["| secret | comes from |", "|---|---|"]
    for key, ref in secret_refs(config).items():
        if ref.startswith("credential:"):
            where = f"systemd credential `{ref[11:]}` (/etc/picometer/credentials/{ref[11:]})"
        elif is_reference(ref):
            where = f"`{ref}`"
        else:
            where = "literal in the config file: move it to a credential"
        rows.append(f"| {key} | {where} |")
    passthrough = [name for name, p in config.providers.items() if not p.api_key]
    if passthrough:
        rows.append(f"| {', '.join(sorted(passthrough))} | none: the client's own key is passed through |")
    return "\n".join(rows)


def _budgets(config: Config) -> str:
    b = config.budgets
    rows = ["| scope | per day | per month | max output tokens per call | over the cap |", "|---|---|---|---|---|"]

    def money(value: float) -> str:
        return f"${value:,.2f}" if value else "no cap"

    rows.append(
        f"| everything | {money(b.daily_usd)} | {money(b.monthly_usd)} | {b.max_tokens_per_request or 'no cap'} "
        f"| {b.on_exceed} |"
    )
    for name, w in sorted(config.workflows.items()):
        rows.append(
            f"| workflow {name} | {money(w.daily_usd)} | {money(w.monthly_usd)} | "
            f"{w.max_tokens_per_request or 'no cap'} | {w.on_exceed or b.on_exceed} |"
        )
    return "\n".join(rows)
