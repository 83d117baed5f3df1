"""The `picometer` command: thin click wrappers that parse, call, and print."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, time
from pathlib import Path

import click

from picometer import __version__
from picometer.cli.common import config_option, control_headers, load
from picometer.config import ConfigError, is_reference, secret_refs
from picometer.config.places import Places
from picometer.local_time import last_full_week, parse_week


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="picometer")
@config_option
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Meter, price and guard every LLM call your automations make."""
    ctx.obj = {"config_path": config_path}


@main.command()
@config_option
@click.option("--simulate", is_flag=True, help="Answer every call with the built-in simulated provider (no keys).")
def run(config_path: str | None, simulate: bool) -> None:
    """Run the daemon in the foreground (systemd runs this)."""
    from picometer import daemon
    from picometer.preflight import CannotStart

    config = load(config_path, keyless=simulate)
    try:
        daemon.run(config, simulate)
    except CannotStart as e:
        click.echo(str(e), err=True)
        sys.exit(2)


@main.command()
@config_option
def check(config_path: str | None) -> None:
    """Validate the config, resolve secrets, print the effective config with secrets masked."""
    import tomli_w

    from picometer.config import to_dict
    from picometer.preflight import writable

    config = load(config_path)
    problems = writable(config)
    if problems:
        click.echo("\n".join(problems), err=True)
        sys.exit(2)
    click.echo(f"# picometer {__version__}: config {config.source or '(built-in defaults)'} is valid")
    for key, ref in secret_refs(config).items():
        secret = config.secrets[key]
        if is_reference(ref):
            click.echo(f"# {key}: {ref} -> resolved ({len(secret.value)} characters, not shown)")
        else:
            click.echo(f"# {key}: WARNING a literal secret in the config file; prefer env:, file: or credential:")
    click.echo(tomli_w.dumps(to_dict(config)))


def _places() -> Places:
    """Where this user's picometer keeps its files (root: /var/...; anyone else: ~/.local/state/picometer)."""
    from picometer.config.places import default_places

    return default_places(os.environ, os.geteuid(), str(Path.home()))


@main.command()
@click.option("--out", type=click.Path(dir_okay=False), default="config.toml", show_default=True)
@click.option("--listen", default="127.0.0.1:8787", show_default=True)
@click.option(
    "--provider",
    "providers",
    type=click.Choice(["openai", "anthropic", "openrouter", "ollama"]),
    multiple=True,
    default=("openai", "anthropic"),
    show_default=True,
    help="Providers to configure (repeat the option).",
)
@click.option("--daily-usd", type=float, default=0.0, help="Global daily cap in dollars (0 = none).")
@click.option("--monthly-usd", type=float, default=0.0, help="Global monthly cap in dollars (0 = none).")
@click.option("--data-dir", default=lambda: _places().data_dir, show_default="by who runs it")
@click.option("--log-dir", default=lambda: _places().log_dir, show_default="by who runs it")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(
    out: str,
    listen: str,
    providers: tuple[str, ...],
    daily_usd: float,
    monthly_usd: float,
    data_dir: str,
    log_dir: str,
    force: bool,
) -> None:
    """Write a starter config."""
    from picometer.config.starter import starter_text

    try:
        text = starter_text(listen, providers, daily_usd, monthly_usd, data_dir, log_dir)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    path = Path(out)
    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; pass --force to overwrite it")
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}; check it with: picometer check --config {path}")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def status(config_path: str | None, as_json: bool) -> None:
    """Ask the running daemon how it is doing (exit 1 when it is down)."""
    import httpx

    config = load(config_path, keyless=True)
    url = f"{config.server.url}/-/status"
    try:
        answer = httpx.get(url, timeout=5, trust_env=False, headers=control_headers(config))
        data = answer.json()
    except (httpx.HTTPError, ValueError) as e:
        click.echo(f"picometer is down: no answer from {url} ({type(e).__name__})", err=True)
        sys.exit(1)
    if answer.status_code != 200:  # a refusal (a wrong admin token, too many of them): its own words
        error = data.get("error") if isinstance(data, dict) else None
        said = error.get("message") if isinstance(error, dict) else None
        click.echo(f"picometer refused: {said or f'HTTP {answer.status_code} from {url}'}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    from picometer.reports.status_text import status_lines

    for line in status_lines(data):
        click.echo(line)


@main.command()
@config_option
@click.option("--week", default=None, help="ISO week, e.g. 2026-W47 (default: the last full week, local time).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to FILE (default: stdout).")
def export(config_path: str | None, week: str | None, out: str | None) -> None:
    """The weekly CSV: one row per day x workflow x env x provider x model, from the rollups."""
    from picometer.clock import SystemClock, resolve_zone
    from picometer.reports.export import to_csv, week_rows, write_atomic
    from picometer.store.rollups import Rollups

    config = load(config_path, keyless=True)
    zone = resolve_zone(config.budgets.timezone)
    try:
        monday = parse_week(week) if week else last_full_week(SystemClock().now(), zone)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--week") from None
    rollups = Rollups(Path(config.storage.data_dir) / "rollups.db")
    try:
        text = to_csv(week_rows(rollups, monday, zone))
    finally:
        rollups.close()
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomic(Path(out), text)
        click.echo(f"wrote {out} ({text.count(chr(10)) - 1} rows)", err=True)


@main.command()
@config_option
@click.argument("invoice", type=click.Path(exists=True, dir_okay=False))
@click.option("--provider", default=None, help="Compare with this provider's calls only (default: all).")
@click.option("--threshold-pct", type=float, default=5.0, show_default=True, help="Flag a day off by more.")
@click.option("--min-usd", type=float, default=0.01, show_default=True, help="...and by at least this much.")
def reconcile(
    config_path: str | None, invoice: str, provider: str | None, threshold_pct: float, min_usd: float
) -> None:
    """Hold a provider's cost export (CSV) against the metered spend, per UTC day and model.

    INVOICE needs a day column (date, usage_date_utc or start_time), a cost in dollars (cost_usd,
    amount_value or cost) and, best, a model (model or line_item): OpenAI's cost export and Anthropic's
    console export have them. Exit 1 when a day is off by more than the threshold."""
    from picometer.reports.reconcile import InvoiceError, compare, metered, read_invoice, render
    from picometer.store.rollups import Rollups

    config = load(config_path, keyless=True)
    if provider is not None and provider not in config.providers:
        raise click.BadParameter(f"no provider {provider!r}; configured: {', '.join(config.providers)}")
    try:
        billed = read_invoice(Path(invoice).read_bytes())
    except InvoiceError as e:
        click.echo(f"picometer: cannot read {invoice}: {e}", err=True)
        sys.exit(2)
    if not billed:
        click.echo(f"{invoice} has no cost rows", err=True)
        sys.exit(2)
    days = sorted(day for day, _ in billed)
    first = int(datetime.combine(days[0], time(), UTC).timestamp()) // 3600
    end = int(datetime.combine(days[-1], time(), UTC).timestamp()) // 3600 + 24
    rollups = Rollups(Path(config.storage.data_dir) / "rollups.db")
    try:
        ours = metered(rollups.hourly(first, end), frozenset({provider}) if provider else None)
    finally:
        rollups.close()
    lines = compare(billed, ours, threshold_pct, min_usd)
    click.echo(render(lines))
    sys.exit(1 if any(ln.flagged for ln in lines) else 0)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def canary(config_path: str | None, as_json: bool) -> None:
    """Run the canary probes once now and print the results (exit 1 when any fails).

    Through the running daemon; when it is down, through the same gateway in this process."""
    import asyncio

    import httpx

    from picometer.watch.canary import table

    config = load(config_path)
    if not config.canary.probes:
        click.echo("no canary probes configured: add a [[canary.probes]] table (picometer runbook shows one)")
        return
    headers = control_headers(config)
    timeout = sum(p.max_latency_s + 10 for p in config.canary.probes) + 30  # a scheduled run may be going first
    try:
        answer = httpx.post(f"{config.server.url}/-/canary", headers=headers, timeout=timeout, trust_env=False)
    except httpx.TransportError:
        from picometer.daemon import canary_once

        click.echo("(picometer is not running: probing through an in-process gateway)", err=True)
        data = asyncio.run(canary_once(config))
    else:
        data = answer.json() if answer.headers.get("content-type") == "application/json" else {}
        if answer.status_code != 200 or "results" not in data:
            message = (data.get("error") or {}).get("message") or f"HTTP {answer.status_code}"
            click.echo(f"picometer refused: {message}", err=True)
            sys.exit(1)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else table(data["results"]))
    sys.exit(0 if data["ok"] else 1)


@main.command()
@config_option
@click.option(
    "--period", type=click.Choice(["today", "week", "month", "7d", "30d"]), default="today", show_default=True
)
@click.option(
    "--by", type=click.Choice(["workflow", "model", "provider", "env"]), default="workflow", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def report(config_path: str | None, period: str, by: str, as_json: bool) -> None:
    """Spend, requests, errors, tokens and latency for a period, from the rollups."""
    from picometer.clock import SystemClock, resolve_zone
    from picometer.metering.budget import caps_from_config
    from picometer.reports.report import build, render
    from picometer.store.rollups import Rollups

    config = load(config_path, resolve=False)
    db = Path(config.storage.data_dir) / "rollups.db"
    if not db.exists():
        click.echo(f"no data yet: {db} does not exist (has the daemon run with this config?)", err=True)
        sys.exit(1)
    rollups = Rollups(db)
    try:
        caps = [cap for pair in caps_from_config(config).values() for cap in pair]
        data = build(
            rollups, period, by, SystemClock().now(), resolve_zone(config.budgets.timezone), caps, config.workflows
        )
    finally:
        rollups.close()
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else render(data))


@main.command()
@config_option
@click.argument("model")
@click.option("--provider", default=None, help="A configured provider (default: the first that prices MODEL).")
def prices(config_path: str | None, model: str, provider: str | None) -> None:
    """The price per 1M tokens picometer charges for MODEL, and where it comes from."""
    from picometer.clock import SystemClock
    from picometer.metering.media import MEDIA_ENDPOINTS, is_media_priced
    from picometer.metering.pricing import Pricer, price_list
    from picometer.reports.prices_text import price_lines

    config = load(config_path, resolve=False)
    if provider is not None and provider not in config.providers:
        raise click.UsageError(f"no provider {provider!r}; configured: {', '.join(sorted(config.providers))}")
    pricer, now = Pricer(config.prices), SystemClock().now()
    # Without --provider: the provider whose own price list has the model (claude-* on an anthropic one), else
    # the default provider or the first that prices it at all.
    names = [provider] if provider else [config.server.default_provider, *sorted(config.providers)]
    names = [n for n in dict.fromkeys(names) if n in config.providers]
    priced = {n: r for n in names if (r := pricer.rates(config.providers[n], model, now)) is not None}
    own = [n for n, r in priced.items() if r.source.startswith(f"genai-prices:{price_list(config.providers[n])}/")]
    name = next(iter(own or priced or names))
    provider_config = config.providers[name]
    rates = pricer.rates(provider_config, model, now)
    media = [e for e in MEDIA_ENDPOINTS if is_media_priced(model, e)]
    if rates is None and media:
        click.echo(f"{model}: priced per call on {', '.join(media)} from OpenAI's list prices")
        click.echo("source: picometer's tables (metering/image_prices.py, metering/audio_prices.py)")
        return
    if rates is None:
        click.echo(
            f"{model} on {name}: no known price. Add to the config:\n"
            f'  [prices."{model}"]\n  input = 0.0   # dollars per 1M input tokens\n  output = 0.0',
            err=True,
        )
        sys.exit(1)
    for line in price_lines(model, name, provider_config, rates, pricer.variants(provider_config, model, now)):
        click.echo(line)


@main.command()
@config_option
@click.argument("workflow")
@click.option("--for", "duration", default=None, help="How long, e.g. 30m, 2h, 1d (default: until resumed).")
@click.option("--force", is_flag=True, help="Pause a name that has not made a call yet (no typo check).")
def pause(config_path: str | None, workflow: str, duration: str | None, force: bool) -> None:
    """Stop WORKFLOW's calls now (429 workflow_paused), until resumed or for a while."""
    from picometer.cli.switch import switch

    switch(load(config_path, keyless=True), "pause", workflow, duration, force)


@main.command()
@config_option
@click.argument("workflow")
def resume(config_path: str | None, workflow: str) -> None:
    """Let WORKFLOW's calls through again."""
    from picometer.cli.switch import switch

    switch(load(config_path, keyless=True), "resume", workflow, None)


@main.command()
@config_option
def runbook(config_path: str | None) -> None:
    """Print the runbook filled with this config's real ports, paths and secret locations."""
    from picometer.runbook import render

    click.echo(render(load(config_path, resolve=False)), nl=False)


@main.command()
@click.option("--seconds", type=float, default=20.0, show_default=True, help="How long to send traffic.")
@click.option(
    "--data",
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the demo's files here, across runs (default: a fresh temporary directory each run).",
)
def demo(seconds: float, workdir: str | None) -> None:
    """Run the daemon against the built-in simulated provider with synthetic traffic, and report."""
    import tempfile

    from picometer.demo import run_demo

    run_demo(Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="picometer-demo-")), seconds)
