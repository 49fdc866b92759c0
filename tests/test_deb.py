"""The Debian package's pieces agree with the project: version, interpreter, dependencies, the
conffile, the unit and the man page paths, the maintainer scripts.

Building the package takes a minute and a clean Debian root to install it in another two, so the
suite checks what is cheap to check here, and .ci/run does the whole cycle (`make deb`, then
scripts/check-deb.sh: install, check, upgrade with an edited config, remove, purge)."""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import relay

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "debian"
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")


def control() -> dict[str, str]:
    """debian/control's fields (source and binary stanza together), continuation lines joined."""
    text = re.sub(r"^#.*\n", "", (DEBIAN / "control").read_text(), flags=re.MULTILINE)
    fields: dict[str, str] = {}
    for name, value in re.findall(r"^([A-Za-z-]+):(.*(?:\n[ \t].*)*)", text, re.MULTILINE):
        fields[name] = " ".join(value.split())
    return fields


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def dependency_names() -> list[str]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    # and the `fast` extra, which scripts/deb-venv.sh installs too
    wanted = [*project["dependencies"], *project["optional-dependencies"]["fast"]]
    return [re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0] for d in wanted]


def test_the_package_version_is_the_project_version() -> None:
    top = (DEBIAN / "changelog").read_text().splitlines()[0]
    found = re.match(r"smsc-relay \((?P<version>[^)]+)\) ", top)
    assert found, top
    project = pyproject()["project"]
    assert isinstance(project, dict)
    # A native package: the version is the project's, with no Debian revision.
    assert found["version"] == project["version"] == relay.__version__
    assert (DEBIAN / "source" / "format").read_text().strip() == "3.0 (native)"


def test_the_package_runs_the_interpreter_the_project_requires() -> None:
    fields = control()
    project = pyproject()["project"]
    assert isinstance(project, dict)
    floor = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert floor, project["requires-python"]
    python = f"python{floor[1]}.{floor[2]}"  # Debian 12's, and the venv's compiled modules are for it
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert python in depends and "python3.11-venv" in fields["Build-Depends"]
    assert f"PYTHON=${{PYTHON:-/usr/bin/{python}}}" in (ROOT / "scripts" / "deb-venv.sh").read_text()
    for where in ("rules", "smsc-relay.lintian-overrides"):
        named = set(re.findall(r"python3\.\d+", (DEBIAN / where).read_text()))
        assert named <= {python}, f"debian/{where} names {named}"


def test_every_python_dependency_comes_with_the_venv_and_its_licence_is_named() -> None:
    """All of pyproject's dependencies are in the package's venv (Debian 12's python3-* are older
    than most floors: scripts/deb-venv.sh), none from a Debian package beside it, and
    debian/copyright names each (its licence is in the venv's dist-info)."""
    depends = control()["Depends"]
    assert not re.search(r"\bpython3-", depends), f"a Debian python3-* package beside the venv: {depends}"
    venv = (ROOT / "scripts" / "deb-venv.sh").read_text()
    install = next(line for line in venv.splitlines() if " install " in line and "--python" in line)
    assert "--no-deps" not in install, "the venv must get the relay's dependencies"
    assert "--system-site-packages" not in venv
    copyright = " ".join((DEBIAN / "copyright").read_text().split()).lower()
    unnamed = [n for n in dependency_names() if n.lower() not in copyright]
    assert unnamed == [], f"debian/copyright does not name: {unnamed}"


def test_the_conffile_is_the_server_config_and_check_accepts_it(tmp_path: Path) -> None:
    rules = (DEBIAN / "rules").read_text()
    assert (
        "scripts/server-config.sh /etc/smsc-relay /var/lib/smsc-relay > $(PKG)/etc/smsc-relay/relay.yaml"
        in rules
    )
    # debhelper makes every file under etc/ a conffile: the config is the only one.
    assert set(re.findall(r"\$\(PKG\)/etc/\S+", rules)) <= {
        "$(PKG)/etc/smsc-relay",
        "$(PKG)/etc/smsc-relay/relay.yaml",
    }
    assert not (DEBIAN / "smsc-relay.conffiles").exists()
    assert "cp $(PKG)/etc/smsc-relay/relay.yaml $(PKG)/usr/share/smsc-relay/relay.yaml" in rules
    assert "SHIPPED=/usr/share/smsc-relay/relay.yaml" in (DEBIAN / "smsc-relay.postinst").read_text()

    made = subprocess.run(
        [str(ROOT / "scripts" / "server-config.sh")], capture_output=True, text=True, check=True
    )
    example = (ROOT / "config" / "relay.example.yaml").read_text()
    changed = [
        line
        for line in difflib.unified_diff(example.splitlines(), made.stdout.splitlines(), lineterm="", n=0)
        if line.startswith("+") and not line.startswith("+++")
    ]
    # Exactly the three server paths: a line of the example that moved would leave ../var here.
    assert [c[1:].split()[0] for c in changed] == ["password_file:", "outbox:", "path:"], changed
    assert "/var/lib/smsc-relay/outbox" in changed[1] and "/var/lib/smsc-relay/spool.db" in changed[2]
    assert "../var" not in made.stdout

    config = tmp_path / "relay.yaml"
    config.write_text(made.stdout)
    (tmp_path / "password").write_text("replace-with-the-real-password\n")  # what postinst writes
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "relay", "check", "-c", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "example value(s) left; fine for a dry run" in done.stdout + done.stderr  # what CI expects


def test_the_unit_names_what_the_package_installs() -> None:
    unit = (ROOT / "systemd" / "smsc-relay.service").read_text()
    # debian/rules replaces the one Documentation= line and keeps the rest as it is.
    assert len(re.findall(r"^Documentation=", unit, re.MULTILINE)) == 1
    assert "ExecStart=/opt/smsc-relay/bin/smsc-relay serve -c /etc/smsc-relay/relay.yaml" in unit
    assert "LoadCredential=password:/etc/smsc-relay/password" in unit  # what postinst prepares
    assert re.search(r"^User=smsc-relay$", unit, re.MULTILINE)  # the user postinst makes
    assert re.search(r"^StateDirectory=smsc-relay$", unit, re.MULTILINE)
    assert (DEBIAN / "smsc-relay.links").read_text().split() == [
        "opt/smsc-relay/bin/smsc-relay",
        "usr/bin/smsc-relay",
    ]


def test_the_man_page_paths_debian_rules_rewrites_are_the_pages() -> None:
    rules = (DEBIAN / "rules").read_text()
    page = (ROOT / "scripts" / "manpage.py").read_text()
    for path in ("/etc/systemd/system/smsc-relay.service", "/opt/smsc-relay/share/doc/install.md"):
        assert f'"{path}"' in page
        escaped = path.replace("-", "\\\\-")  # as roff has it, in a sed pattern: smsc\\-relay
        assert f"^{escaped}$$|" in rules, path


def test_the_docs_the_package_ships_exist() -> None:
    for pattern in (DEBIAN / "smsc-relay.docs").read_text().split():
        assert list(ROOT.glob(pattern)), pattern


@pytest.mark.parametrize("script", SCRIPTS)
def test_maintainer_scripts_are_posix_sh_and_leave_systemd_to_its_helpers(script: str) -> None:
    path = DEBIAN / f"smsc-relay.{script}"
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text
    code = re.sub(r"<<'(\w+)'\n.*?\n\1\n", "\n", text, flags=re.DOTALL)  # a message's text is no call
    assert re.search(r"^#DEBHELPER#$", text, re.MULTILINE)
    subprocess.run(["sh", "-n", str(path)], check=True)  # dash on Debian: no bashisms that break it
    # Policy: services through deb-systemd-invoke (respects policy-rc.d, nothing without systemd).
    calls = [line for line in code.splitlines() if re.match(r"\s*systemctl ", line)]
    assert all("daemon-reload" in c for c in calls), calls
    for line in code.splitlines():
        if "deb-systemd-invoke" in line and not line.lstrip().startswith("#"):
            assert "smsc-relay.service" in line


def test_the_service_is_started_by_postinst_only_for_a_config_that_is_not_the_example() -> None:
    postinst = (DEBIAN / "smsc-relay.postinst").read_text()
    decision = postinst[postinst.index('if cmp -s "$ETC/relay.yaml" "$SHIPPED"') :]
    assert decision.index("action=try-restart") < decision.index("elif") < decision.index("action=restart")
    assert '[ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]' in decision
    # debhelper's snippets start, restart and stop nothing: postinst and prerm do.
    assert "dh_installsystemd --no-start --no-stop-on-upgrade" in (DEBIAN / "rules").read_text()
    prerm = (DEBIAN / "smsc-relay.prerm").read_text()
    assert 'if [ "$1" = remove ]' in prerm and "deb-systemd-invoke stop smsc-relay.service" in prerm


def test_the_readme_says_what_make_deb_installs_before_the_quickstart() -> None:
    script = (ROOT / "scripts" / "deb-deps.sh").read_text()
    declared = re.search(r"^packages=\((?P<names>[^)]*)\)", script, re.MULTILINE)
    assert declared
    packages = declared["names"].split() + re.findall(r"packages\+=\(([a-z0-9.+-]+)\)", script)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install on Debian/Ubuntu") : readme.index("## Quickstart")]
    unnamed = [p for p in packages if f"`{p}`" not in section]
    assert unnamed == [], f"README's Debian section does not name: {unnamed}"
    assert "make deb" in section and "apt-get install ./smsc-relay_*.deb" in section
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^deb:\n\t\./scripts/build-deb\.sh$", makefile, re.MULTILINE)
