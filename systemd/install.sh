#!/usr/bin/env bash
# Install evedge as a service on Debian / Raspberry Pi OS, from this source tree:
#   sudo systemd/install.sh            install or upgrade, then (re)start the service
#   sudo systemd/install.sh --no-start install or upgrade only
# Code goes to /opt/evedge (its own virtual environment), the config to /etc/evedge/evedge.toml (kept on
# upgrades), state to /var/lib/evedge, logs to the journal (journalctl -u evedge).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/evedge
START=yes
[ "${1:-}" = "--no-start" ] && START=no

[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "this installer is for Debian / Raspberry Pi OS" >&2; exit 1; }

packages=(python3 python3-venv)
while read -r package scope _; do
    case "$package" in ''|'#'*) continue ;; esac
    [ "$scope" = test ] && continue  # what only the tests need (a browser) stays off the site's box
    # A command of that name counts: Node.js from another source brings its own npm (Debian's would conflict).
    command -v "$package" >/dev/null 2>&1 && continue
    packages+=("$package")
done < "$SRC/tools/debian-packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "evedge needs Python 3.11 or newer" >&2; exit 1; }

id evedge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/evedge --shell /usr/sbin/nologin evedge
usermod -a -G dialout evedge

# The console's front-end files (npm registry), into the source tree the package is then built from.
"$SRC/tools/build-console"

mkdir -p "$PREFIX"
[ -x "$PREFIX/.venv/bin/python" ] || python3 -m venv "$PREFIX/.venv"
"$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/.venv/bin/python" -m pip install --quiet "$SRC"
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

install -d -m 0750 -o root -g evedge /etc/evedge
if [ ! -f /etc/evedge/evedge.toml ]; then
    install -m 0640 -o root -g evedge "$SRC/etc/evedge.toml" /etc/evedge/evedge.toml
    echo "wrote /etc/evedge/evedge.toml: set the site, chargers and passwords, then: systemctl restart evedge"
fi
install -m 0644 "$SRC/systemd/evedge.service" /etc/systemd/system/evedge.service

systemctl daemon-reload
systemctl enable evedge.service >/dev/null
if [ "$START" = yes ]; then
    systemctl restart evedge.service
    systemctl --no-pager --lines=5 status evedge.service || true
fi
