#!/bin/sh
# `sudo make uninstall`: removes the service, the venv and the command. Keeps the config, the
# credentials, and the data and logs (budgets, rollups, pauses, exports, usage log).
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/picometer}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
BINDIR=${BINDIR:-/usr/local/bin}

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "make uninstall removes files under $PREFIX and $UNITDIR: run it as root (sudo make uninstall)" >&2
    exit 1
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now picometer.service 2>/dev/null || true
fi
rm -f "$DESTDIR$UNITDIR/picometer.service"
link=$DESTDIR$BINDIR/picometer
if [ "$(readlink "$link" 2>/dev/null || true)" = "$PREFIX/venv/bin/picometer" ]; then
    rm -f "$link"
fi
# Only what install put there: a PREFIX shared with other files keeps them.
rm -rf "$DESTDIR$PREFIX/venv"
rm -f "$DESTDIR$PREFIX/RUNBOOK.md"
rmdir "$DESTDIR$PREFIX" 2>/dev/null || true
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

cat <<KEPT
picometer is uninstalled. Kept, remove them yourself if you want them gone:
  $SYSCONFDIR/picometer              config and credentials (API keys)
  /var/lib/picometer, /var/lib/private/picometer   rollups, budgets, pauses, exports
  /var/log/picometer, /var/log/private/picometer   usage log
KEPT
