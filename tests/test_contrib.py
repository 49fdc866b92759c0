"""contrib/: the Prometheus alert rules pass promtool, and every query names a metric the relay
exports (a dashboard or rule about a metric that does not exist shows nothing and says nothing)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from relay.metrics import Metrics

CONTRIB = Path(__file__).parent.parent / "contrib"
RULES = CONTRIB / "prometheus" / "smsc-relay-rules.yml"
DASHBOARD = CONTRIB / "grafana" / "smsc-relay.json"


def exported() -> set[str]:
    text = Metrics().exposition().decode()
    return {m[1] for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)}


def named(expr: str) -> set[str]:
    names = set(re.findall(r"\bsmsc_relay_\w+", expr))
    return {
        re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n
        for n in names
    }


def test_the_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `apt-get install prometheus` (scripts/test-deps.sh does)"
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


@pytest.mark.parametrize("source", [RULES, DASHBOARD], ids=["rules", "dashboard"])
def test_every_query_names_an_exported_metric(source: Path) -> None:
    if source.suffix == ".json":
        dash = json.loads(source.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    else:
        exprs = re.findall(r"^\s*expr: (.+)$", source.read_text(), re.MULTILINE)
    assert exprs
    metrics = exported()
    for expr in exprs:
        unknown = named(expr) - metrics
        assert not unknown, (expr, unknown)
    covered = set().union(*(named(e) for e in exprs))
    assert len(covered) >= (8 if source.suffix == ".json" else 4)
