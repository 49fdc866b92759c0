#!/usr/bin/env bash
# `make deb`: smsc-relay_<version>_<arch>.deb in the checkout, built by debian/rules in a copy of
# it (the checkout keeps no build tree, and nothing is written beside it), then lintian, which
# fails the build on an error (debian/smsc-relay.lintian-overrides says why each override is one).
#   env: DEB_VERSION (a version other than debian/changelog's, for a test upgrade),
#        OUT (the .deb's directory: the checkout), LINTIAN=0 (skip lintian)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deb-deps.sh
src=$PWD
mkdir -p "${OUT:=$src}"; OUT=$(realpath "$OUT")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tree=$work/smsc-relay
mkdir "$tree"
# What git has (committed or not, never what .gitignore leaves out: .venv, var/, caches; nor a
# package built before); a tree without git: all but those.
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$src" ls-files -z --cached --others --exclude-standard | grep -zv '^smsc-relay_.*\.deb$' \
    | while IFS= read -r -d '' f; do if [[ -e "$f" || -L "$f" ]]; then printf '%s\0' "$f"; fi; done \
    | xargs -0 -r cp -a --parents -t "$tree"
else
  tar -C "$src" --exclude=./.venv --exclude=./var --exclude=./.git --exclude='*/__pycache__' \
      --exclude='./smsc-relay_*.deb' -cf - . \
    | tar -C "$tree" -xf -
fi

if [[ -n "${DEB_VERSION:-}" ]]; then
  { printf 'smsc-relay (%s) unstable; urgency=medium\n\n  * Built as %s by scripts/build-deb.sh.\n\n' \
      "$DEB_VERSION" "$DEB_VERSION"
    printf ' -- %s  %s\n\n' "$(sed -n 's/^Maintainer: //p' debian/control)" "$(date -R)"
    cat debian/changelog; } > "$tree/debian/changelog"
fi

# -b: the binary package only (the source is this repository); -us -uc: unsigned.
(cd "$tree" && SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -STimestamp)} \
   dpkg-buildpackage -b -us -uc) > "$work/build.log" 2>&1 || { tail -n 60 "$work/build.log" >&2; exit 1; }
deb=$(ls "$work"/smsc-relay_*.deb)
rm -f "$OUT"/smsc-relay_*_*.deb  # the previous build: `apt-get install ./smsc-relay_*.deb` takes one
cp "$deb" "$OUT/"
echo "== built $OUT/$(basename "$deb") ($(du -h "$deb" | cut -f1))"

if [[ "${LINTIAN:-1}" != 0 ]]; then
  # --fail-on error: a warning is reported, an error fails `make deb`.
  lintian --fail-on error --info "$OUT/$(basename "$deb")"
  echo "== lintian: no errors"
fi
