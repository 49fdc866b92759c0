"""The README tells a newcomer what `make test` will install on their machine."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_names_every_package_make_test_installs() -> None:
    script = (ROOT / "scripts" / "test-deps.sh").read_text()
    declared = re.search(r"^packages=\((?P<names>[^)]*)\)", script, re.MULTILINE)
    assert declared, "scripts/test-deps.sh no longer declares packages=(...)"
    packages = declared["names"].split() + re.findall(r"missing\+=\(([a-z0-9.+-]+)\)", script)
    assert "python3-venv" in packages
    readme = (ROOT / "README.md").read_text()
    unnamed = [p for p in packages if f"`{p}`" not in readme]
    assert unnamed == [], f"README.md does not name these packages that make test installs: {unnamed}"


def test_the_readme_names_every_tool_the_alert_corpus_tests() -> None:
    from tests.alert_corpus import cases

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Alert summaries") : readme.index("## Alert storms")]
    names = {re.sub(r"\s*\(.*\)$", "", c.tool).split()[0] for c in cases()}
    unnamed = sorted(n for n in names if n.lower() not in section.lower())
    assert unnamed == [], f"README's alert summaries section does not name: {unnamed}"


def test_the_postfix_benchmark_says_what_to_install_rather_than_a_traceback() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "e2e_postfix.py"), "--runs", "1"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "apt-get install -y --no-install-recommends postfix" in done.stderr
