#!/usr/bin/env bash
# The package as a user gets it (pipx install, pip install): build the wheel, install it into a
# fresh virtualenv of the system's python3, and run `--version` and `render` from there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m venv "$work/build-env"
"$work/build-env/bin/pip" wheel --quiet --no-deps --wheel-dir "$work/dist" .
wheel=$(ls "$work"/dist/smsc_relay-*.whl)
echo "== built $(basename "$wheel")"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel"
version=$("$work/venv/bin/smsc-relay" --version)
echo "== installed: $version"
[[ "$version" == "smsc-relay $("$work/venv/bin/python" -c 'import relay; print(relay.__version__)')" ]]
cd "$work"  # not the checkout: the installed package, not the source tree, is what runs
out=$("$work/venv/bin/smsc-relay" render -c "$OLDPWD/config/relay.example.yaml" \
      --to alerts@sms.example.com "$OLDPWD/tests/corpus/nagios_host_problem.eml")
grep -q "PROBLEM web01 DOWN: CRITICAL - Host Unreachable" <<<"$out"
echo "== render works from the wheel"
