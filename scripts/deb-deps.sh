#!/usr/bin/env bash
# What `make deb` needs from Debian (not what `make test` needs: scripts/test-deps.sh). As root it
# installs what is missing; otherwise it names the one command to type. `--check` adds what
# scripts/check-deb.sh (CI's install, upgrade and purge of the package) needs.
set -euo pipefail

# debhelper: dh and the maintainer scripts' snippets (it brings dpkg-dev); python3.11-venv: the
# pip that fills the package's virtualenv; lintian: the package's check after the build.
packages=(debhelper python3.11-venv lintian)
# mmdebstrap: a clean Debian root for the package's install, upgrade and purge (not this machine's).
[[ "${1:-}" == --check ]] && packages+=(mmdebstrap)
missing=()
for p in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0

if [[ "$(id -u)" != 0 ]]; then
  echo "make deb needs these Debian packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing what make deb needs: ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
