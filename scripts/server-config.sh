#!/usr/bin/env bash
# The example config with a server's paths, on stdout: the spool and the dry run's outbox under the
# state directory, the password from the credential systemd hands over (or ETC/password when the
# relay runs without systemd); still a dry run. scripts/install.sh writes it as ETC/relay.yaml and
# the Debian package ships it as its conffile (debian/rules), so both install the same file.
#   scripts/server-config.sh [ETC [STATE_DIR]]    (defaults /etc/smsc-relay, /var/lib/smsc-relay)
set -euo pipefail
cd "$(dirname "$0")/.."
ETC=${1:-/etc/smsc-relay}
STATE_DIR=${2:-/var/lib/smsc-relay}
sed -e "s|path: ../var/spool.db |path: $STATE_DIR/spool.db |" \
    -e "s|outbox: ../var/outbox |outbox: $STATE_DIR/outbox |" \
    -e "s|^  password: \${SMSC_PASSWORD:-dry-run-not-a-password}|  password_file: \${CREDENTIALS_DIRECTORY:-$ETC}/password|" \
    config/relay.example.yaml
