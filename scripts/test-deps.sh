#!/usr/bin/env bash
# What `make test` needs besides the Python packages of pyproject.toml: Debian packages and
# python3-venv. As root (CI, a fresh root shell) it installs what is missing; otherwise it
# names the one command to type and stops before any test runs. .ci/run calls it too.
set -euo pipefail

# swaks: a real SMTP client in the tests; openssl: DKIM keys; systemd: systemd-analyze for the
# unit checks; prometheus-alertmanager: a real sender for the storm tests; prometheus: promtool
# for contrib/ (its alert rules); postgresql: initdb and pg_ctl for the tests' own throwaway
# clusters (tests/pg.py; the system service is never used); groff-base: groff renders the manual
# page (tests/test_manpage.py).
packages=(swaks make openssl systemd prometheus-alertmanager prometheus postgresql groff-base)
missing=()
for p in "${packages[@]}"; do
  # "install ok installed": a removed package can leave config files behind and still be known
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
# Debian's own python3 needs python3-venv for `python3 -m venv`.
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null && ! "$py" -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
    break
  fi
done
((${#missing[@]})) || exit 0

if [[ "$(id -u)" != 0 ]]; then
  echo "make test needs these Debian packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps dpkg from starting the packages' services (alertmanager) on install.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "installing what the tests need: ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
