"""`make install` / `make uninstall` staged under DESTDIR: every file in place with its mode, idempotent."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def make(target: str, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PICOMETER"))}
    # The base interpreter, as on a Pi (python3), not this test venv.
    python = getattr(sys, "_base_executable", sys.executable)
    return subprocess.run(
        ["make", "-s", target, f"DESTDIR={dest}", f"PYTHON={python}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under root: mode, modification time, and content hash (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = "dir"
            out[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, what)
    return out


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.lstat().st_mode))


def test_make_install_lays_out_every_file_twice_changes_nothing_and_uninstall_keeps_config_and_data(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "root"
    first = make("install", dest)
    assert first.returncode == 0, first.stderr
    assert "sudo systemctl enable --now picometer" in first.stdout

    etc = dest / "etc" / "picometer"
    unit = dest / "etc" / "systemd" / "system" / "picometer.service"
    venv = dest / "opt" / "picometer" / "venv"
    assert unit.read_text() == (ROOT / "systemd" / "picometer.service").read_text()
    assert mode(unit) == "0o644"
    assert (etc / "config.toml").read_text() == (ROOT / "config.example.toml").read_text()
    assert mode(etc / "config.toml") == "0o644"
    assert mode(etc / "credentials") == "0o700", "secrets readable by nothing else"
    credentials = sorted(p.name for p in (etc / "credentials").iterdir())
    in_unit = sorted(
        line.split("=", 1)[1].split(":", 1)[0]
        for line in unit.read_text().splitlines()
        if line.startswith("LoadCredential=")
    )
    assert credentials == in_unit, "one placeholder per LoadCredential=, or systemd would refuse to start"
    assert all(mode(etc / "credentials" / name) == "0o600" for name in credentials)
    assert (dest / "opt" / "picometer" / "RUNBOOK.md").read_text() == (ROOT / "runbook" / "RUNBOOK.md").read_text()
    assert os.readlink(dest / "usr" / "local" / "bin" / "picometer") == "/opt/picometer/venv/bin/picometer"

    before = tree(dest)
    again = make("install", dest)
    assert again.returncode == 0, again.stderr
    assert tree(dest) == before, "a second install changes nothing"

    # The operator's edits survive a reinstall; the installed command checks the installed config.
    config = (etc / "config.toml").read_text().replace("daily_usd = 1.0", "daily_usd = 2.5")
    (etc / "config.toml").write_text(config)
    check_env = {**os.environ, "PICOMETER_CREDENTIALS_DIR": str(etc / "credentials")}
    check = [str(venv / "bin" / "picometer"), "check", "--config", str(etc / "config.toml")]
    empty = subprocess.run(check, env=check_env, capture_output=True, text=True)
    assert empty.returncode == 2 and "openai_api_key is empty" in empty.stderr, "an unfilled secret is named"
    (etc / "credentials" / "openai_api_key").write_text("sk-test-installed\n")
    assert make("install", dest).returncode == 0
    assert (etc / "config.toml").read_text() == config, "the config is never overwritten"
    assert (etc / "credentials" / "openai_api_key").read_text() == "sk-test-installed\n"
    checked = subprocess.run(check, env=check_env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "sk-test-installed" not in checked.stdout + checked.stderr

    data = dest / "var" / "lib" / "picometer"
    data.mkdir(parents=True)
    (data / "rollups.db").write_bytes(b"spend")
    gone = make("uninstall", dest)
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists() and not (dest / "opt" / "picometer").exists()
    assert not (dest / "usr" / "local" / "bin" / "picometer").is_symlink()
    assert (etc / "config.toml").read_text() == config and (etc / "credentials" / "openai_api_key").exists()
    assert (data / "rollups.db").read_bytes() == b"spend", "data stays"
    assert "/etc/picometer" in gone.stdout, "uninstall says what it kept"


def test_install_without_root_or_destdir_says_how(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    # As root (a CI container), drop to nobody: the refusal is what an ordinary user sees. The script is run
    # from a copy anyone can read, as from a clone in a 0700 home: it must say so before touching the source.
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    shared = Path(tempfile.mkdtemp(prefix="picometer-install-"))
    try:
        shared.chmod(0o755)
        script = shared / "install.sh"
        shutil.copy(ROOT / "systemd" / "install.sh", script)
        p = subprocess.run(
            [*as_user, "sh", str(script), "install"], cwd=shared, env=env, capture_output=True, text=True
        )
    finally:
        shutil.rmtree(shared)
    assert p.returncode != 0 and "run it as root (sudo make install)" in p.stderr, p.stderr
    assert "Makefile" not in p.stderr and "cannot" not in p.stderr.lower()
    assert "install:" in (ROOT / "Makefile").read_text() and "systemd/install.sh" in (ROOT / "Makefile").read_text()
