#!/usr/bin/env bash
# The package as a user gets it (pipx install, pip install): build the wheel, install it into a
# fresh virtualenv of the system's python3, and run `--version` and `render` from there.
set -euo pipefail
cd "$(dirname "$0")/.."
# /usr/bin/python3 when there is one: a venv of an interpreter under /root (pyenv) is one that
# other users, such as the service user below, cannot run.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
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
# and as pipx installs it, into an application venv of its own with the command on PATH
"$work/build-env/bin/pip" install --quiet pipx
PIPX_HOME="$work/pipx" PIPX_BIN_DIR="$work/pipx-bin" "$work/build-env/bin/pipx" install --quiet "$wheel" >/dev/null
[[ "$("$work/pipx-bin/smsc-relay" --version)" == "$version" ]]
echo "== pipx install works"
[[ "$version" == "smsc-relay $("$work/venv/bin/python" -c 'import relay; print(relay.__version__)')" ]]
cd "$work"  # not the checkout: the installed package, not the source tree, is what runs
out=$("$work/venv/bin/smsc-relay" render -c "$OLDPWD/config/relay.example.yaml" \
      --to alerts@sms.example.com "$OLDPWD/tests/corpus/nagios_host_problem.eml")
grep -q "PROBLEM web01 DOWN: CRITICAL - Host Unreachable" <<<"$out"
echo "== render works from the wheel"

# Without systemd (a container, or ExecStart by hand, docs/install.md): the installed command as
# an unprivileged user, the password from the environment, mail in, provider mail in the outbox.
if [[ "$(id -u)" == 0 ]] && id nobody >/dev/null 2>&1; then
  run="$work/run"
  mkdir -p "$run/outbox"
  chmod 0755 "$work" "$work/venv" && chown -R nobody "$run"
  port=$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$run/relay.yaml" <<YAML
listen: {host: 127.0.0.1, port: $port}
provider:
  login: check
  password: \${SMSC_PASSWORD}
  reply_address: replies@relay.example.net
  outbox: $run/outbox
spool: {path: $run/spool.db}
routes:
  - match: {recipient: '^(?P<phones>[0-9]{11})@sms\.invalid$'}
YAML
  runuser -u nobody -- env SMSC_PASSWORD=from-the-environment \
    "$work/venv/bin/smsc-relay" serve -c "$run/relay.yaml" 2>"$run/relay.log" &
  relay=$!
  "$work/venv/bin/python" - "$port" <<'PY' || { cat "$run/relay.log"; exit 1; }
import smtplib, socket, sys, time
port = int(sys.argv[1])
for _ in range(100):  # bounded: 10 s for the relay to listen
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
    client.sendmail("cron@host.invalid", ["79991234567@sms.invalid"], "Subject: no systemd\r\n\r\nit runs")
PY
  for _ in $(seq 100); do compgen -G "$run/outbox/*.eml" >/dev/null && break; sleep 0.1; done
  kill "$relay"; wait "$relay" || true
  compgen -G "$run/outbox/*.eml" >/dev/null || { cat "$run/relay.log"; exit 1; }
  ! grep -q from-the-environment "$run/relay.log" "$run"/outbox/*  # the password stays out
  echo "== serve runs as nobody without systemd, password from the environment"
fi
