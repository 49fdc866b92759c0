#!/usr/bin/env bash
# Install smsc-relay on a server (as root): /opt/smsc-relay, /etc/smsc-relay, /var/lib/smsc-relay,
# the systemd unit and smsc-relay(8). Safe to run again: it upgrades the code and never overwrites
# an existing config or password. See docs/install.md. Every path can be moved (a test installs
# into a temporary directory): PREFIX (/opt/smsc-relay), ETC (/etc/smsc-relay), STATE_DIR
# (/var/lib/smsc-relay), UNIT_DIR (/etc/systemd/system), BIN_DIR (/usr/local/bin: the command's
# link), MAN_DIR (/usr/local/share/man: the man page's link); PYTHON (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/smsc-relay}
ETC=${ETC:-/etc/smsc-relay}
STATE_DIR=${STATE_DIR:-/var/lib/smsc-relay}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
MAN_DIR=${MAN_DIR:-/usr/local/share/man}
# The system interpreter: one under a private directory (pyenv in /root, say) could not be run
# by the service user.
PYTHON=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}
USER_NAME=smsc-relay  # the unit's User= and Group=

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

echo "== code: $PREFIX ($("$PYTHON" --version))"
if [ -x "$PREFIX/bin/python" ] && ! runuser -u nobody -- "$PREFIX/bin/python" -c "" 2>/dev/null; then
  echo "   $PREFIX was built from an interpreter other users cannot run: rebuilding"
  rm -rf "$PREFIX"
fi
[ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --upgrade pip
# With the `fast` extra: `serve` runs on uvloop (pyproject.toml says why it is optional).
"$PREFIX/bin/python" -m pip install --quiet '.[fast]'
# The command the docs type, on root's and every user's PATH.
install -d -m 0755 "$BIN_DIR"
ln -sfn "$PREFIX/bin/smsc-relay" "$BIN_DIR/smsc-relay"
install -d -m 0755 "$PREFIX/share/doc"
install -m 0644 docs/install.md README.md "$PREFIX/share/doc/"

echo "== man page: $PREFIX/share/man/man8/smsc-relay.8"
# From the installed relay's own argument parser, so that it names every command it has.
install -d -m 0755 "$PREFIX/share/man/man8" "$MAN_DIR/man8"
"$PREFIX/bin/python" scripts/manpage.py > "$PREFIX/share/man/man8/smsc-relay.8.tmp"
chmod 0644 "$PREFIX/share/man/man8/smsc-relay.8.tmp"
mv -f "$PREFIX/share/man/man8/smsc-relay.8.tmp" "$PREFIX/share/man/man8/smsc-relay.8"
# `man smsc-relay` finds it beside the command's link (man-db maps /usr/local/bin to it).
ln -sfn "$PREFIX/share/man/man8/smsc-relay.8" "$MAN_DIR/man8/smsc-relay.8"

echo "== user: $USER_NAME"
getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
getent passwd "$USER_NAME" >/dev/null ||
  useradd --system --gid "$USER_NAME" --home-dir /var/lib/smsc-relay --no-create-home \
          --shell /usr/sbin/nologin --comment "smsc-relay" "$USER_NAME"

echo "== state: $STATE_DIR"
# What the unit's StateDirectory= (and StateDirectoryMode=0700) makes at each start, made here
# too: without systemd the relay runs as the service user, which cannot create it under /var/lib.
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$STATE_DIR"

echo "== config: $ETC"
install -d -m 0750 -g "$USER_NAME" "$ETC"
if [ ! -e "$ETC/relay.yaml" ]; then
  # The example, with server paths: the spool under StateDirectory, the password from the
  # credential systemd hands over (or $ETC/password when run by hand), still a dry run. The
  # Debian package ships the same file (scripts/server-config.sh).
  scripts/server-config.sh "$ETC" "$STATE_DIR" > "$ETC/relay.yaml"
  chgrp "$USER_NAME" "$ETC/relay.yaml"; chmod 0640 "$ETC/relay.yaml"
  echo "   wrote $ETC/relay.yaml (dry run: edit it, then remove provider.outbox)"
fi
if [ ! -e "$ETC/password" ]; then
  (umask 077; printf 'replace-with-the-real-password\n' > "$ETC/password")
  echo "   wrote $ETC/password (edit it: the provider password)"
fi
# Readable by root and the service's group, on every run (an older install left it root only):
# systemd reads it as root for LoadCredential=; run without systemd, the relay reads it itself.
chgrp "$USER_NAME" "$ETC/password"; chmod g+r,g-wx,o-rwx "$ETC/password"

echo "== systemd unit: $UNIT_DIR/smsc-relay.service"
install -d -m 0755 "$UNIT_DIR"
# The unit names the default paths; a moved install gets its own (StateDirectory= stays: systemd
# keeps it under /var/lib).
sed -e "s|/opt/smsc-relay|$PREFIX|g" -e "s|/etc/smsc-relay|$ETC|g" systemd/smsc-relay.service \
  > "$UNIT_DIR/smsc-relay.service"
chmod 0644 "$UNIT_DIR/smsc-relay.service"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "   next: systemctl enable --now smsc-relay"
else
  echo "   (systemd is not running here: nothing to reload)"
  echo "   to run it without systemd: docs/install.md, \"Without systemd\""
fi
"$PREFIX/bin/smsc-relay" check -c "$ETC/relay.yaml"
