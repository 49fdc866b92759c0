#!/usr/bin/env bash
# Install smsc-relay on a server (as root): /opt/smsc-relay, /etc/smsc-relay, the systemd unit.
# Safe to run again: it upgrades the code and never overwrites an existing config or password.
# See docs/install.md. Variables: PREFIX (/opt/smsc-relay), ETC (/etc/smsc-relay), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/smsc-relay}
ETC=${ETC:-/etc/smsc-relay}
# The system interpreter: one under a private directory (pyenv in /root, say) could not be run
# by the service user.
PYTHON=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

echo "== code: $PREFIX ($("$PYTHON" --version))"
if [ -x "$PREFIX/bin/python" ] && ! runuser -u nobody -- "$PREFIX/bin/python" -c "" 2>/dev/null; then
  echo "   $PREFIX was built from an interpreter other users cannot run: rebuilding"
  rm -rf "$PREFIX"
fi
[ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/bin/python" -m pip install --quiet .
# The command the docs type, on root's and every user's PATH.
ln -sfn "$PREFIX/bin/smsc-relay" /usr/local/bin/smsc-relay
install -d -m 0755 "$PREFIX/share/doc"
install -m 0644 docs/install.md README.md "$PREFIX/share/doc/"

echo "== user: smsc-relay"
getent group smsc-relay >/dev/null || groupadd --system smsc-relay
getent passwd smsc-relay >/dev/null ||
  useradd --system --gid smsc-relay --home-dir /var/lib/smsc-relay --no-create-home \
          --shell /usr/sbin/nologin --comment "smsc-relay" smsc-relay

echo "== config: $ETC"
install -d -m 0750 -g smsc-relay "$ETC"
if [ ! -e "$ETC/relay.yaml" ]; then
  # The example, with server paths: the spool under StateDirectory, the password from the
  # credential systemd hands over (or $ETC/password when run by hand), still a dry run.
  sed -e "s|path: ../var/spool.db |path: /var/lib/smsc-relay/spool.db |" \
      -e "s|outbox: ../var/outbox |outbox: /var/lib/smsc-relay/outbox |" \
      -e "s|^  password: \${SMSC_PASSWORD:-dry-run-not-a-password}|  password_file: \${CREDENTIALS_DIRECTORY:-$ETC}/password|" \
      config/relay.example.yaml > "$ETC/relay.yaml"
  chgrp smsc-relay "$ETC/relay.yaml"; chmod 0640 "$ETC/relay.yaml"
  echo "   wrote $ETC/relay.yaml (dry run: edit it, then remove provider.outbox)"
fi
if [ ! -e "$ETC/password" ]; then
  (umask 077; printf 'replace-with-the-real-password\n' > "$ETC/password")
  echo "   wrote $ETC/password (root only; systemd passes it to the service as a credential)"
fi

echo "== systemd unit: $UNIT_DIR/smsc-relay.service"
install -m 0644 systemd/smsc-relay.service "$UNIT_DIR/smsc-relay.service"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "   next: systemctl enable --now smsc-relay"
else
  echo "   (systemd is not running here: nothing to reload)"
fi
"$PREFIX/bin/smsc-relay" check -c "$ETC/relay.yaml"
