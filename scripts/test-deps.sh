#!/bin/sh
# System tools the test suite drives for real: systemd-analyze (unit files), promtool (alert rules),
# LibreOffice headless (the weekly CSV opens in a spreadsheet), Chromium and its driver (the web page in a
# real browser). Installed from Debian when missing.
set -eu
missing=""
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
# soffice alone is not enough: without the Calc component a CSV converts to nothing, silently.
calc_installed() {
    for pkg in libreoffice-calc-nogui libreoffice-calc; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" && return 0
    done
    return 1
}
if command -v dpkg-query >/dev/null 2>&1; then
    calc_installed || missing="$missing libreoffice-calc-nogui"
else
    command -v soffice >/dev/null 2>&1 || missing="$missing libreoffice-calc-nogui"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "the tests need:$missing (apt-get install them as root)" >&2
    exit 1
fi
echo "installing for the tests:$missing" >&2
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
