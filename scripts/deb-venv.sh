#!/usr/bin/env bash
# The Debian package's self-contained environment: a virtualenv of Debian's python3.11 with the
# relay and its Python dependencies from PyPI, built under ROOT (the package's staging tree) for
# PREFIX (/opt/smsc-relay) and made to name PREFIX, not ROOT, in every path it keeps. debian/rules
# runs it. Bookworm's own python3-* packages are older than pyproject.toml's floors for most of
# the dependencies (aiosmtpd, aiosmtplib, dkimpy, email-validator, prometheus-client, httpx and
# psycopg-pool; inscriptis has none), so all of them come from PyPI, as `make install` takes them.
#   scripts/deb-venv.sh ROOT [PREFIX]     env: PYTHON (/usr/bin/python3.11), PIP_CONSTRAINT
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(realpath -m "$1")
PREFIX=${2:-/opt/smsc-relay}
PYTHON=${PYTHON:-/usr/bin/python3.11}
venv=$ROOT$PREFIX
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The package's venv gets no pip (the package manager upgrades it, not pip), so a build venv's
# pip installs into it (pip --python).
"$PYTHON" -m venv "$work/pip"
"$work/pip/bin/python" -m pip install --quiet --upgrade pip
"$work/pip/bin/pip" wheel --quiet --no-deps --wheel-dir "$work/dist" .
rm -rf "$venv"
"$PYTHON" -m venv --without-pip "$venv"
# No byte code now: it would name ROOT in every traceback. postinst compiles it in place.
# With the `fast` extra (uvloop: `serve` runs on it), as `make install` installs it.
wheel=("$work"/dist/smsc_relay-*.whl)
"$work/pip/bin/pip" --python "$venv/bin/python" install --quiet --no-compile --no-warn-script-location \
  "${wheel[0]}[fast]"
"$work/pip/bin/pip" --python "$venv/bin/python" check

# ROOT out of every file that names it: the scripts' #! lines, pyvenv.cfg's `command`.
rm -f "$venv"/bin/activate* "$venv"/bin/Activate.ps1
grep -rlF --null "$ROOT" "$venv" | xargs -0 -r sed -i "s|$ROOT$PREFIX|$PREFIX|g"
if grep -rqF "$ROOT" "$venv"; then
  echo "deb-venv.sh: $ROOT is still named in:" >&2; grep -rlF "$ROOT" "$venv" >&2; exit 1
fi
# What pip records of where it installed from (a path of this build) and what it needs to
# uninstall (never run here: dpkg owns these files).
find "$venv" -name direct_url.json -delete
find "$venv" -name __pycache__ -prune -exec rm -rf {} +
# Files the wheels mark executable that nothing runs (a test module without #!), and a
# .gitignore one ships: as Debian wants files of a package (lintian), nothing else changed.
find "$venv/lib" -type f -perm /111 ! -name '*.so' ! -name '*.so.*' -print0 |
  while IFS= read -r -d '' f; do [[ "$(head -c2 "$f")" == '#!' ]] || chmod a-x "$f"; done
find "$venv/lib" -name .gitignore -delete
echo "deb-venv.sh: $PREFIX: $("$venv/bin/python" -c 'import relay; print("smsc-relay", relay.__version__)')," \
     "$(find "$venv/lib" -maxdepth 3 -name '*.dist-info' | wc -l) distributions"
