#!/usr/bin/env bash
# CI's check of the Debian package on the machine itself (as root, on Debian 12; an earlier
# `make install` there is set aside and put back): apt-get install, `smsc-relay --version`,
# `check` and `render` as the service user, the installed unit's checks, and, where systemd runs
# (a CI machine with it as PID 1), a start of the service with the example config (a dry run) and
# a stop; then purge, and nothing of it may be left. scripts/check-deb.sh tests upgrade, remove
# and purge in a root of its own, where the maintainer scripts' service requests are recorded.
#   scripts/check-deb-host.sh [PACKAGE.deb]    (default: the one `make deb` left in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "== $*"; }
fail() { echo "check-deb-host.sh: $*" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || fail "run as root (it installs and purges the package on this machine)"
deb=$(realpath "${1:-$(ls smsc-relay_*.deb | tail -n 1)}")
version=$(dpkg-deb -f "$deb" Version)
! dpkg-query -W -f '${Status}' smsc-relay 2>/dev/null | grep -q installed ||
  fail "the smsc-relay package is installed here: this check installs and purges it, so it runs only where it is not"
log=$(mktemp)
aside=$(mktemp -d)

# A machine that ran scripts/install.sh before (a CI machine that is not fresh, a developer's) has
# the same paths, the service user and a unit in /etc that would shadow the package's. They are
# moved aside and the user and group removed, so that the package is checked as on a clean machine
# (its purge must remove a user it created), and all of it is put back on exit, whatever happened.
PRIOR=(/opt/smsc-relay /etc/smsc-relay /var/lib/smsc-relay /etc/systemd/system/smsc-relay.service
       /usr/local/bin/smsc-relay /usr/local/share/man/man8/smsc-relay.8)
prior_user=$(getent passwd smsc-relay || true)
prior_group=$(getent group smsc-relay || true)
restore() {
  local i
  for i in "${!PRIOR[@]}"; do
    if [[ -e "$aside/$i" || -L "$aside/$i" ]]; then rm -rf "${PRIOR[$i]}"; mv "$aside/$i" "${PRIOR[$i]}"; fi
  done
  if [[ -n "$prior_group" ]] && ! getent group smsc-relay >/dev/null; then
    groupadd --system --gid "$(cut -d: -f3 <<<"$prior_group")" smsc-relay
  fi
  if [[ -n "$prior_user" ]] && ! getent passwd smsc-relay >/dev/null; then
    IFS=: read -r _ _ uid gid gecos home shell <<<"$prior_user"
    useradd --system --uid "$uid" --gid "$gid" --comment "$gecos" --home-dir "$home" --no-create-home \
      --shell "$shell" smsc-relay
  fi
  [[ ! -d /run/systemd/system ]] || systemctl daemon-reload || true
  rm -rf "$aside" "$log"
}
trap restore EXIT
for i in "${!PRIOR[@]}"; do
  if [[ -e "${PRIOR[$i]}" || -L "${PRIOR[$i]}" ]]; then
    say "set aside until the end: ${PRIOR[$i]} (an earlier scripts/install.sh)"
    mv "${PRIOR[$i]}" "$aside/$i"
  fi
done
if [[ -n "$prior_user" ]]; then say "set aside until the end: the smsc-relay user"; userdel smsc-relay; fi
if getent group smsc-relay >/dev/null; then groupdel smsc-relay; fi
[[ ! -d /run/systemd/system ]] || systemctl daemon-reload
apt() { DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$@" >"$log" 2>&1 ||
          { tail -n 40 "$log" >&2; fail "apt-get $* failed"; }; }

say "install on this machine: apt-get install $(basename "$deb")"
apt install "$deb"
[[ "$(/usr/bin/smsc-relay --version)" == "smsc-relay ${version%%-*}" ]] || fail "smsc-relay --version"
as_user=(setpriv --reuid=smsc-relay --regid=smsc-relay --init-groups --)
"${as_user[@]}" /usr/bin/smsc-relay check -c /etc/smsc-relay/relay.yaml >/dev/null 2>&1 || fail "check as smsc-relay"
"${as_user[@]}" /usr/bin/smsc-relay render -c /etc/smsc-relay/relay.yaml --to alerts@sms.example.com \
  tests/corpus/nagios_host_problem.eml | grep -q "PROBLEM web01 DOWN: CRITICAL - Host Unreachable" || fail "render"
UNIT=/lib/systemd/system/smsc-relay.service ./scripts/check-unit.sh

if [[ -d /run/systemd/system ]]; then
  say "under this machine's systemd: start with the example config (a dry run), then stop"
  systemctl start smsc-relay || { journalctl -u smsc-relay -n 40 --no-pager >&2 || true; fail "the service did not start"; }
  systemctl is-active --quiet smsc-relay || fail "the service is not active"
  systemctl stop smsc-relay
else
  say "no systemd runs here (a container): the service is not started; the unit was checked above"
fi

say "purge: nothing left"
apt purge smsc-relay
for d in /etc/smsc-relay /opt/smsc-relay /var/lib/smsc-relay /usr/bin/smsc-relay; do
  [[ ! -e "$d" ]] || fail "purge left $d"
done
! getent passwd smsc-relay >/dev/null || fail "purge left the user"
! getent group smsc-relay >/dev/null || fail "purge left the group"
say "the package installs, runs and purges cleanly on this machine"
