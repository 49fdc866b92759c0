#!/usr/bin/env bash
# CI's check of the Debian package under a real systemd (as root). CI's machine is a container
# without systemd as PID 1, where scripts/check-deb-host.sh cannot start the unit and
# scripts/check-deb.sh only records the maintainer scripts' requests; here a clean Debian 12 root
# made with mmdebstrap (systemd and the package's dependencies: no network needed later) is booted
# with systemd-nspawn, systemd its PID 1, loopback its only network. At its boot a oneshot unit
# runs the check: `dpkg -i` with the example config (enabled, not started); configured (a login
# of its own, the dry run's outbox kept), `systemctl start`: active, its main process the
# smsc-relay user's with no new privileges, a seccomp filter and CAP_NET_BIND_SERVICE alone,
# `systemd-analyze security` 2.0 or lower on the running unit, a mail to its SMTP port answered
# 250 and in the outbox; an upgrade restarts it; `systemctl stop`: inactive, exit 0,
# `event=stopped` logged; a first install onto a configured relay.yaml starts it, remove stops
# it. It writes PASS/FAIL lines and powers the guest off; this script waits (at most
# CHECK_DEB_SYSTEMD_TIMEOUT, 300 s), prints them, and fails on a FAIL, on no result or a timeout
# (with the guest's journal). About 40 s, most of it mmdebstrap.
#   scripts/check-deb-systemd.sh [PACKAGE.deb]    (default: the one `make deb` left in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "== $*"; }
fail() { echo "check-deb-systemd.sh: $*" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || fail "run as root (it builds a Debian root with mmdebstrap and boots it)"
deb=$(realpath "${1:-$(ls smsc-relay_*.deb | tail -n 1)}")
timeout_s=${CHECK_DEB_SYSTEMD_TIMEOUT:-300}
work=$(mktemp -d)
root=$work/root
# systemd-nspawn keeps its locks in /run/systemd/nspawn; made here, it goes with the rest.
had_nspawn_run=$([[ -e /run/systemd/nspawn ]] && echo 1 || true)
cleanup() {
  rm -rf --one-file-system "$work"
  [[ -n "$had_nspawn_run" ]] || rm -rf /run/systemd/nspawn
}
trap cleanup EXIT

# mmdebstrap (as scripts/check-deb.sh) and systemd-nspawn (systemd-container), installed if missing.
./scripts/deb-deps.sh --check
if ! command -v systemd-nspawn >/dev/null; then
  say "installing systemd-container (systemd-nspawn)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get install -y -qq --no-install-recommends systemd-container >"$work/apt.log" 2>&1 ||
    { timeout 120 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends \
        systemd-container >"$work/apt.log" 2>&1; } || { tail -n 20 "$work/apt.log" >&2; fail "apt-get install systemd-container"; }
fi

# Everything the guest needs is in the root before it boots: systemd, and the package's
# dependencies as its control file names them (python3.11, adduser, ca-certificates, libraries).
deps=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/[[:space:]]//g')
say "a clean Debian 12 root with systemd and $deps (mmdebstrap)"
mirror=http://deb.debian.org/debian
timeout 600 mmdebstrap --quiet --variant=apt --mode=root --include="systemd,$deps" bookworm "$root" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" </dev/null
mkdir -p "$root/root/check"
cp "$deb" "$root/root/check/smsc-relay.deb"

# The check, run by systemd in the guest. Each line is PASS or FAIL and goes to the result file,
# which this script reads after the guest has powered off.
cat > "$root/root/check/check.sh" <<'GUEST'
#!/bin/bash
set -uo pipefail
exec >/root/check/result 2>&1 </dev/null
failed=0
pass() { echo "PASS $*"; }
bad() { echo "FAIL $*"; failed=1; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else bad "$what"; fi; }
finish() {
  if ((failed)); then
    journalctl -u smsc-relay --no-pager -n 30 | sed 's/^/  journal: /'; echo "RESULT FAIL"
  else echo "RESULT PASS"; fi
  exit 0
}
cfg=/etc/smsc-relay/relay.yaml
unit=smsc-relay.service
deb=/root/check/smsc-relay.deb
dpkg_() { dpkg "$@" >/root/check/dpkg.log 2>&1 || { bad "dpkg $*: $(tail -n 5 /root/check/dpkg.log)"; finish; }; }
state() { systemctl is-active $unit; }
main_pid() { systemctl show -p MainPID --value $unit; }

dpkg_ -i $deb
check "installed with the example config: enabled" [ "$(systemctl is-enabled $unit)" = enabled ]
check "installed with the example config: not started" [ "$(state)" = inactive ]

# Configured: no longer the shipped example (a login of its own), still the dry run's outbox.
sed -i 's/^\(  login: \)mylogin\b/\1ci-check/' "$cfg"
grep -q '^  login: ci-check' "$cfg" && grep -q '^  outbox: /var/lib/smsc-relay/outbox' "$cfg" ||
  { bad "the config edit did not apply"; finish; }
cp "$cfg" /root/check/relay.yaml
timeout 60 systemctl start $unit
if [ "$(state)" = active ]; then pass "configured: systemctl start, active"
else bad "configured: not active after systemctl start ($(state))"; finish; fi

pid=$(main_pid)
status=$(cat "/proc/$pid/status")
field() { sed -n "s/^$1:[[:space:]]*//p" <<<"$status" | awk '{print $1}'; }
check "runs as the smsc-relay user (uid $(field Uid))" [ "$(field Uid)" = "$(id -u smsc-relay)" ]
check "runs as the smsc-relay group (gid $(field Gid))" [ "$(field Gid)" = "$(id -g smsc-relay)" ]
check "no new privileges" [ "$(field NoNewPrivs)" = 1 ]
check "a seccomp filter" [ "$(field Seccomp)" = 2 ]
check "CAP_NET_BIND_SERVICE alone (effective $(field CapEff), bounding $(field CapBnd))" \
  [ "$(field CapEff)" = 0000000000000400 -a "$(field CapBnd)" = 0000000000000400 ]
score=$(systemd-analyze security --no-pager $unit 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
check "systemd-analyze security of the running unit: exposure $score" \
  awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'

port=$(sed -n 's/^  port: \([0-9]*\).*/\1/p' "$cfg" | head -n 1)
reply=$(timeout 30 python3.11 - "$port" <<'PY' 2>&1
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
    s.ehlo("check.example.com")
    s.mail("ci@check.example.com")
    code, _ = s.rcpt("79991234567@sms.example.com")
    assert code == 250, f"RCPT {code}"
    code, text = s.data(b"From: ci@check.example.com\r\nTo: 79991234567@sms.example.com\r\n"
                        b"Subject: systemd check\r\n\r\nrelay under systemd works\r\n")
    print(code, text.decode())
PY
)
check "a mail to 127.0.0.1:$port: $reply" [ "${reply%% *}" = 250 ]
found=
for _ in $(seq 100); do  # delivery to the outbox follows the 250: up to 20 s
  found=$(grep -l 'relay under systemd works' /var/lib/smsc-relay/outbox/* 2>/dev/null | head -n 1)
  [ -z "$found" ] || break
  sleep 0.2
done
check "the mail is in the dry run's outbox ($found)" [ -n "$found" ]

dpkg_ -i $deb
check "upgrade (the same package again): postinst restarted it" [ "$(state)" = active -a "$(main_pid)" != "$pid" ]
timeout 60 systemctl stop $unit
check "systemctl stop: inactive" [ "$(state)" = inactive ]
check "systemctl stop: exit status 0" [ "$(systemctl show -p ExecMainStatus --value $unit)" = 0 ]
check "systemctl stop: event=stopped logged" \
  bash -c "journalctl -u $unit -o cat --no-pager | grep -q 'event=stopped'"

# A first install onto a configured relay.yaml (docs/install.md: from make install to the package).
dpkg_ --purge smsc-relay
install -d /etc/smsc-relay && cp /root/check/relay.yaml "$cfg"
dpkg_ --force-confold -i $deb
check "first install onto a configured relay.yaml: postinst started it" [ "$(state)" = active ]
dpkg_ --remove smsc-relay
check "remove: prerm stopped it" [ "$(state)" = inactive ]
dpkg_ --purge smsc-relay
finish
GUEST
chmod 0755 "$root/root/check/check.sh"
cat > "$root/etc/systemd/system/smsc-check.service" <<'UNIT'
[Unit]
Description=smsc-relay package check under systemd
After=basic.target
SuccessAction=poweroff
FailureAction=poweroff
[Service]
Type=oneshot
Environment=DEBIAN_FRONTEND=noninteractive
ExecStart=/root/check/check.sh
TimeoutStartSec=240
UNIT
cat > "$root/etc/systemd/system/smsc-check.target" <<'UNIT'
[Unit]
Description=smsc-relay package check (basic.target and the check alone)
Requires=basic.target smsc-check.service
After=basic.target
AllowIsolate=yes
UNIT

# --register=no --keep-unit: no machined or system bus needed on this machine; --private-network:
# the guest has only its loopback.
say "boot it with systemd-nspawn (systemd.unit=smsc-check.target), at most ${timeout_s}s"
rc=0
timeout --kill-after=20 "$timeout_s" systemd-nspawn --quiet --directory="$root" --machine=smsc-check \
  --register=no --keep-unit --private-network --console=pipe --boot -- systemd.unit=smsc-check.target \
  </dev/null >"$work/console.log" 2>&1 || rc=$?
result=$root/root/check/result
[[ ! -s "$result" ]] || sed 's/^/   /' "$result"
if ! grep -Eqx 'RESULT (PASS|FAIL)' "$result" 2>/dev/null; then
  # No result: the check did not finish (a timeout, a guest that did not boot); its journal says why.
  echo "-- systemd-nspawn's output (exit $rc):" >&2; tail -n 20 "$work/console.log" >&2
  echo "-- the guest's journal (the check and the service, else its last lines):" >&2
  jr=(journalctl -D "$root/var/log/journal" --no-pager)
  { "${jr[@]}" -n 40 -u smsc-check.service -u smsc-relay.service | grep -v -- '-- No entries --' ||
    "${jr[@]}" -n 40; } >&2 2>/dev/null || true
  [[ "$rc" != 124 && "$rc" != 137 ]] || fail "timed out after ${timeout_s}s"
  fail "the guest gave no result (systemd-nspawn exited $rc)"
fi
grep -qx 'RESULT PASS' "$result" || fail "the package's service failed its checks under systemd"
say "under systemd the configured package's service starts hardened, takes mail and stops cleanly"
