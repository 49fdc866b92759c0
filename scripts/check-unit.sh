#!/usr/bin/env bash
# Check the systemd unit: `systemd-analyze verify` passes, and `security` rates it 2.0 or lower.
set -euo pipefail
cd "$(dirname "$0")/.."
unit=${UNIT:-/etc/systemd/system/smsc-relay.service}
[ -e "$unit" ] || unit=systemd/smsc-relay.service
systemd-analyze verify "$unit"
report=$(systemd-analyze security --offline=yes --no-pager "$unit")
score=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "$unit: exposure $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || {
  printf '%s\n' "$report" >&2; echo "exposure $score is above 2.0" >&2; exit 1; }
