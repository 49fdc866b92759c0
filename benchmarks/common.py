"""Shared benchmark plumbing: free ports, child processes, Postfix's smtp-source/smtp-sink."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POSTFIX = Path(os.environ.get("POSTFIX_ROOT", HERE / ".postfix"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def postfix_tool(name: str) -> list[str]:
    """smtp-source / smtp-sink from Debian's postfix package, unpacked without installing an MTA."""
    binary = POSTFIX / "usr" / "sbin" / name
    if not binary.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", "postfix"], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob("postfix_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(POSTFIX)], check=True)
    return ["env", f"LD_LIBRARY_PATH={POSTFIX / 'usr/lib/postfix'}", str(binary)]


def relay_config(
    tmp: Path,
    port: int,
    upstream_port: int,
    outbox: bool = False,
    phone_limits: bool | None = None,
    spool: str | None = None,
    name: str = "relay",
) -> Path:
    """`phone_limits` None: the key is left out (a relay that predates it must read the file).
    `spool`: the YAML of the spool section (default: a SQLite file in `tmp`).
    The route takes any phone number of 7 to 15 digits as the address (smtp-source -N prepends
    a sequence number to the recipient: 17999000@, 27999000@, ... are phones of their own)."""
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}, max_connections: 1000, max_connections_per_address: 1000}}
provider:
  host: 127.0.0.1
  port: {upstream_port}
  login: bench
  password: bench-password
  reply_address: replies@relay.example.com
  {"outbox: " + str(tmp / "outbox") if outbox else ""}
  {"" if phone_limits is None else f"phone_limits: {str(phone_limits).lower()}"}
spool: {spool or f"{{path: {tmp / 'spool.db'}}}"}
delivery: {{concurrency: 2, min_backoff: 60, max_backoff: 600}}
routes:
  - match: {{recipient: '^(?P<phones>[0-9]{{7,15}})@sms\\.example\\.com$'}}
""")
    return cfg


def start_relay(cfg: Path, port: int, tree: Path = ROOT) -> subprocess.Popen[bytes]:
    """The relay of `tree` (default: this checkout) as `smsc-relay serve`, in its own process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}  # ahead of the editable install of this checkout
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "-c", str(cfg), "--log-level", "WARNING"],
        cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    wait_port(port)
    return proc


def start_bare(port: int, record: Path | None = None, lean: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(HERE / "bare_sink.py"), str(port)] + ([str(record)] if record else [])
    env = {**os.environ, "BARE_LEAN": "1" if lean else "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_port(port)
    return proc


def start_smtp_sink(port: int) -> subprocess.Popen[bytes]:
    """Postfix's smtp-sink: a C SMTP server that accepts and discards, the fastest upstream."""
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([*postfix_tool("smtp-sink"), *user, f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (/proc/PID/stat utime+stime;
    children not included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) onwards
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def have_tools() -> bool:
    return shutil.which("dpkg-deb") is not None
