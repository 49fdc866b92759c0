#!/usr/bin/env bash
# CI's check of the Debian package (as root): install it with apt-get into a clean Debian 12 root,
# `smsc-relay --version`, `check` on the installed config (the example's notes), `render` as the
# service user, the installed unit (`systemd-analyze verify`, exposure), an upgrade to a rebuilt
# package with an edited config (kept), remove, purge (nothing left). The root is made with
# mmdebstrap, not this machine: here /opt/smsc-relay, /etc/smsc-relay and the user are the
# `make install` of .ci/run (or the machine's own relay), which the package must not overwrite
# and purge must not delete. No systemd runs there: /run/systemd/system makes the maintainer
# scripts ask for starts, restarts and stops, and policy-rc.d records each and lets none run.
#   scripts/check-deb.sh [PACKAGE.deb]    (default: the one `make deb` left in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "$(id -u)" == 0 ]] || { echo "check-deb.sh: run as root (it builds a Debian root with mmdebstrap)" >&2; exit 1; }
# Mounts (the root's /proc) stay in a mount namespace of this script's own and go with it.
if [[ -z "${CHECK_DEB_NS:-}" ]]; then
  CHECK_DEB_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi
./scripts/deb-deps.sh --check
deb=$(realpath "${1:-$(ls smsc-relay_*.deb | tail -n 1)}")
version=$(dpkg-deb -f "$deb" Version)
work=$(mktemp -d)
root=$work/root
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
say() { echo "== $*"; }
fail() { echo "check-deb.sh: $*" >&2; exit 1; }
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
                   DEBIAN_FRONTEND=noninteractive "$@"; }
apt_in_root() { in_root apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$@" >"$work/apt.log" 2>&1 ||
                  { tail -n 40 "$work/apt.log" >&2; fail "apt-get $* failed"; }; }
# What the maintainer scripts asked of systemd, since the last call.
asked() { local log=$root/var/log/policy-rc.d.log; grep '^smsc-relay' "$log" 2>/dev/null || true; : > "$log"; }
mode() { in_root stat -c '%U:%G %a' "$1"; }  # the root's names, not this machine's

say "the upgrade: $version+ci1, rebuilt"
DEB_VERSION=$version+ci1 OUT=$work LINTIAN=0 ./scripts/build-deb.sh >/dev/null
deb2=$(ls "$work"/smsc-relay_"$version"+ci1_*.deb)

say "a clean Debian 12 root (mmdebstrap)"
mirror=http://deb.debian.org/debian
mmdebstrap --quiet --variant=apt --mode=root bookworm "$root" "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" "deb http://deb.debian.org/debian-security bookworm-security main" \
  </dev/null
mount -t proc proc "$root/proc"
in_root apt-get update -qq
# What a server has besides (systemd for the unit's check, man-db for its man: link), then the
# stand-in for a running systemd.
apt_in_root install systemd procps man-db
printf '#!/bin/sh\necho "$*" >> /var/log/policy-rc.d.log\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/run/systemd/system"
cp "$deb" "$deb2" scripts/check-unit.sh tests/corpus/nagios_host_problem.eml "$root/tmp/"
asked >/dev/null

say "install: apt-get install ./$(basename "$deb")"
apt_in_root install "./tmp/$(basename "$deb")"
grep -q "relay.yaml is still the example" "$work/apt.log" || fail "postinst did not say the config is the example"
[[ -z "$(asked)" ]] || fail "the service was started with the example config"
[[ "$(in_root smsc-relay --version)" == "smsc-relay ${version%%-*}" ]] || fail "smsc-relay --version"
out=$(in_root smsc-relay check -c /etc/smsc-relay/relay.yaml 2>&1) || fail "check: $out"
grep -q "example value(s) left; fine for a dry run" <<<"$out" || fail "check gave no example notes: $out"
echo "$out"
[[ -L "$root/etc/systemd/system/multi-user.target.wants/smsc-relay.service" ]] || fail "the unit is not enabled"
uid=$(in_root id -u smsc-relay)
(( uid < 1000 )) || fail "smsc-relay is not a system user (uid $uid)"
[[ "$(mode /etc/smsc-relay)" == "root:smsc-relay 750" ]] || fail "/etc/smsc-relay: $(mode /etc/smsc-relay)"
for f in relay.yaml password; do
  [[ "$(mode /etc/smsc-relay/$f)" == "root:smsc-relay 640" ]] || fail "/etc/smsc-relay/$f: $(mode /etc/smsc-relay/$f)"
done
[[ "$(mode /var/lib/smsc-relay)" == "smsc-relay:smsc-relay 700" ]] || fail "/var/lib/smsc-relay: $(mode /var/lib/smsc-relay)"
[[ -e "$root/usr/share/man/man8/smsc-relay.8.gz" && -e "$root/usr/share/doc/smsc-relay/README.md.gz" \
   && -e "$root/usr/share/doc/smsc-relay/install.md.gz" ]] || fail "the man page or the docs are missing"
# The service user runs the relay: the venv is readable, the config and the password too.
as_user=(setpriv --reuid=smsc-relay --regid=smsc-relay --init-groups --)
in_root "${as_user[@]}" smsc-relay check -c /etc/smsc-relay/relay.yaml >/dev/null 2>&1 || fail "check as smsc-relay"
in_root "${as_user[@]}" smsc-relay render -c /etc/smsc-relay/relay.yaml --to alerts@sms.example.com \
  /tmp/nagios_host_problem.eml | grep -q "PROBLEM web01 DOWN: CRITICAL - Host Unreachable" || fail "render"
in_root "${as_user[@]}" touch /var/lib/smsc-relay/spool.db  # a spool for purge to remove
say "the installed unit"
in_root env UNIT=/lib/systemd/system/smsc-relay.service /tmp/check-unit.sh

say "upgrade with an edited config: apt-get install ./$(basename "$deb2")"
sed -i 's/^\(  port: \)2525\b/\12526/' "$root/etc/smsc-relay/relay.yaml"
grep -q '^  port: 2526' "$root/etc/smsc-relay/relay.yaml" || fail "(the edit did not apply)"
apt_in_root install "./tmp/$(basename "$deb2")"
[[ "$(in_root dpkg-query -W -f='${Version}' smsc-relay)" == "$version+ci1" ]] || fail "not upgraded"
grep -q '^  port: 2526' "$root/etc/smsc-relay/relay.yaml" || fail "the edited config was not kept"
[[ "$(asked)" == "smsc-relay.service restart" ]] || fail "the service was not restarted on upgrade"
[[ "$(in_root id -u smsc-relay)" == "$uid" ]] || fail "the user was made again"
[[ "$(mode /etc/smsc-relay/relay.yaml)" == "root:smsc-relay 640" ]] || fail "relay.yaml after the upgrade"
in_root smsc-relay check -c /etc/smsc-relay/relay.yaml >/dev/null 2>&1 || fail "check after the upgrade"

say "remove: the service stopped, the code gone, config, spool and user kept"
apt_in_root remove smsc-relay
[[ "$(asked)" == "smsc-relay.service stop" ]] || fail "the service was not stopped on remove"
[[ ! -e "$root/opt/smsc-relay" ]] || fail "remove left /opt/smsc-relay: $(find "$root/opt/smsc-relay" | head)"
[[ -e "$root/etc/smsc-relay/relay.yaml" && -e "$root/var/lib/smsc-relay/spool.db" ]] || fail "remove took config or spool"
in_root id smsc-relay >/dev/null || fail "remove took the user"

say "purge: nothing left"
apt_in_root purge smsc-relay
for d in /etc/smsc-relay /opt/smsc-relay /var/lib/smsc-relay; do
  [[ ! -e "$root$d" ]] || fail "purge left $d: $(find "$root$d" | head)"
done
! in_root getent passwd smsc-relay >/dev/null || fail "purge left the user"
! in_root getent group smsc-relay >/dev/null || fail "purge left the group"
[[ -z "$(in_root dpkg-statoverride --list | grep smsc-relay)" ]] || fail "purge left statoverrides"
[[ -z "$(find "$root/etc/systemd" -name 'smsc-relay*')" ]] || fail "purge left unit links"
say "the package installs, upgrades (config kept), removes and purges cleanly"
