"""A newcomer's first hour, as an ordinary user with no provider keys, in a home directory only they can enter:
the daemon starts with its files under the XDG state directory, the reading commands work, a typo is caught,
and what goes wrong says so in a line or two. Run as root, the commands drop to `nobody` (setpriv)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.patience import patience
from tests.servers import free_port

NOBODY = 65534
AS_USER = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"] if os.geteuid() == 0 else []


ROOT = Path(__file__).parent.parent


@pytest.fixture
def home() -> Iterator[Path]:
    """A 0700 home directory that belongs to the user the commands run as, with a fresh clone of picometer in
    it: the commands run from the clone, as they would for someone who just cloned it."""
    path = Path(tempfile.mkdtemp(prefix="picometer-newcomer-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path / "picometer")], check=True)
    path.chmod(0o700)
    if AS_USER:
        for place in [path, *path.rglob("*")]:
            os.chown(place, NOBODY, NOBODY, follow_symlinks=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def user_env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    # The clone's own code first (python -m puts the working directory first on the path as well).
    return env | {"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(home / "picometer")}


def picometer(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [*AS_USER, sys.executable, "-m", "picometer", *args]
    return subprocess.run(
        command, cwd=home, env=user_env(home), capture_output=True, text=True, timeout=patience(timeout)
    )


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    command = [*AS_USER, sys.executable, "-m", "picometer", "run", *args]
    return subprocess.Popen(
        command, cwd=home / "picometer", env=user_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + patience(30)
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{url}/-/health", trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the daemon did not come up"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def short_failure(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and 0 < len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_a_newcomer_without_keys_gets_a_working_picometer_and_plain_answers(home: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = home / "config.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n')
    if AS_USER:
        os.chown(config, NOBODY, NOBODY)
    args = ("--config", str(config))
    state = home / ".local" / "state" / "picometer"
    which = [*AS_USER, sys.executable, "-c", "import picometer; print(picometer.__file__)"]
    code = subprocess.run(which, cwd=home / "picometer", env=user_env(home), capture_output=True, text=True).stdout
    assert code.startswith(str(home / "picometer")), "the commands run the fresh clone's code"

    daemon = start(home, *args)
    try:
        healthy(url, daemon)
        assert (state / "rollups.db").exists() and list((state / "logs").glob("usage-*.jsonl"))
        assert state.stat().st_uid == (NOBODY if AS_USER else os.geteuid()), "made by the user who ran it"
        for command in (["status"], ["report"], ["export"], ["runbook"], ["prices", "gpt-4o-mini"]):
            done = picometer(home, *command, *args)
            assert done.returncode == 0, (command, done.stderr)
        typo = picometer(home, "pause", "nightly-job", *args)
        assert typo.returncode == 1 and "not paused" in typo.stderr and "known:" in typo.stderr
        busy = picometer(home, "run", *args)  # the port is taken: by this very daemon
        short_failure(busy)
        assert "picometer status" in busy.stderr
    finally:
        stop(daemon)

    unwritable = home / "unwritable.toml"
    unwritable.write_text(f'[server]\nlisten = "127.0.0.1:{free_port()}"\n[storage]\ndata_dir = "/root/picometer"\n')
    if AS_USER:
        os.chown(unwritable, NOBODY, NOBODY)
    failed = picometer(home, "run", "--config", str(unwritable))
    short_failure(failed)
    assert "/root/picometer" in failed.stderr and "[storage].data_dir" in failed.stderr

    keyed = home / "keyed.toml"
    keyed.write_text('[providers.openai]\nkind = "openai"\napi_key = "env:OPENAI_API_KEY"\n')
    missing = picometer(home, "check", "--config", str(keyed))
    assert missing.returncode == 2 and "OPENAI_API_KEY" in missing.stderr and "Traceback" not in missing.stderr

    simulated = start(home, *args, "--simulate")
    try:
        healthy(url, simulated)
        client = openai.OpenAI(base_url=f"{url}/openai", api_key="sim", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    finally:
        stop(simulated)
    records = [json.loads(line) for f in (state / "logs").glob("usage-*.jsonl") for line in f.open()]
    assert [r["status"] for r in records if not r["canary"]] == ["ok"] * 3
    report = picometer(home, "report", "--by", "model", *args).stdout
    [row] = [line for line in report.splitlines() if line.startswith("gpt-4o-mini")]
    cost = row.split()[-3]
    assert cost.startswith("$0.0000") and len(cost.split(".")[1].lstrip("0")) >= 2, row
