#!/bin/sh
# `sudo make install`: the venv under PREFIX, the unit, the config (never overwritten) and the
# credentials directory. Idempotent: a second run with the same source changes nothing.
# `sudo make uninstall` (this script with "uninstall"): removes the service, the venv and the
# command; keeps the config, the credentials, and the data and logs.
# DESTDIR stages everything under another root (for packaging and tests); the venv then lives at
# DESTDIR/PREFIX and runs from there.
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/picometer}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
BINDIR=${BINDIR:-/usr/local/bin}
PYTHON=${PYTHON:-python3}
ACTION=${1:-install}
link=$DESTDIR$BINDIR/picometer

# Before anything else (even finding the source): an ordinary user may not be able to enter its directory.
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "make $ACTION writes to $PREFIX, $SYSCONFDIR and $UNITDIR: run it as root (sudo make $ACTION)," >&2
    echo "or stage it elsewhere with DESTDIR=/some/dir" >&2
    exit 1
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
systemd_running() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

uninstall() {
    if systemd_running; then
        systemctl disable --now picometer.service 2>/dev/null || true
    fi
    rm -f "$DESTDIR$UNITDIR/picometer.service"
    if [ "$(readlink "$link" 2>/dev/null || true)" = "$PREFIX/venv/bin/picometer" ]; then
        rm -f "$link"
    fi
    # Only what install put there: a PREFIX shared with other files keeps them.
    rm -rf "$DESTDIR$PREFIX/venv"
    rm -f "$DESTDIR$PREFIX/RUNBOOK.md"
    rmdir "$DESTDIR$PREFIX" 2>/dev/null || true
    if systemd_running; then
        systemctl daemon-reload
    fi

    cat <<KEPT
picometer is uninstalled. Kept, remove them yourself if you want them gone:
  $SYSCONFDIR/picometer                            config and credentials (API keys)
  /var/lib/picometer, /var/lib/private/picometer   rollups, budgets, pauses, exports
  /var/log/picometer, /var/log/private/picometer   usage log
KEPT
}

if [ "$ACTION" = uninstall ]; then
    uninstall
    exit 0
fi

etc=$DESTDIR$SYSCONFDIR/picometer
venv=$DESTDIR$PREFIX/venv

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "picometer needs Python 3.11 or newer; $PYTHON is older or missing (set PYTHON=...)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "$PYTHON cannot create a venv: sudo apt install python3-venv" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$UNITDIR" "$DESTDIR$BINDIR" "$etc"

# The package is reinstalled only when its source changed (a hash of what goes into the wheel).
source_hash=$(cd "$SRC" && find pyproject.toml README.md picometer -type f ! -path '*/__pycache__/*' \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
if [ "$(cat "$venv/.picometer-source" 2>/dev/null || true)" != "$source_hash" ]; then
    # Built from a copy, so a root build leaves nothing root-owned in the source tree.
    cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/picometer" "$tmp/"
    rm -rf "$tmp/picometer/__pycache__" "$tmp"/picometer/*/__pycache__
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$tmp"
    echo "$source_hash" >"$venv/.picometer-source"
fi
[ "$(readlink "$link" 2>/dev/null || true)" = "$PREFIX/venv/bin/picometer" ] || ln -sfn "$PREFIX/venv/bin/picometer" "$link"

sed -e "s#/opt/picometer#$PREFIX#g" -e "s#/etc/picometer#$SYSCONFDIR/picometer#g" \
    "$SRC/systemd/picometer.service" >"$tmp/picometer.service"
install -C -m 0644 "$tmp/picometer.service" "$DESTDIR$UNITDIR/picometer.service"
install -C -m 0644 "$SRC/runbook/RUNBOOK.md" "$DESTDIR$PREFIX/RUNBOOK.md"

# The config is the operator's from the first install on: never overwritten.
[ -e "$etc/config.toml" ] || install -m 0644 "$SRC/config.example.toml" "$etc/config.toml"

# One file per LoadCredential= line: systemd refuses to start a unit whose credential file is missing.
install -d -m 0700 "$etc/credentials"
chmod 0700 "$etc/credentials"
for name in $(sed -n 's/^LoadCredential=\([^:]*\):.*/\1/p' "$SRC/systemd/picometer.service"); do
    [ -e "$etc/credentials/$name" ] || install -m 0600 /dev/null "$etc/credentials/$name"
    chmod 0600 "$etc/credentials/$name"
done

if systemd_running; then
    systemctl daemon-reload
fi

cat <<NEXT
picometer is installed in $PREFIX (command: $BINDIR/picometer).
Next:
  1. Put each API key in its credential file, for example:
       sudo install -m 0600 /dev/stdin $SYSCONFDIR/picometer/credentials/openai_api_key
     (paste the key, Enter, Ctrl-D). The config refers to it as "credential:openai_api_key".
  2. Edit $SYSCONFDIR/picometer/config.toml (budgets, workflows), then check it:
       sudo picometer check --config $SYSCONFDIR/picometer/config.toml
  3. sudo systemctl enable --now picometer
The runbook: $PREFIX/RUNBOOK.md, or "picometer runbook" for one filled in from your config.
NEXT
