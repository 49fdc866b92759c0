"""End to end against Postfix: client -> (smsc-relay | Postfix) -> the same upstream sink.

Run as root: .venv/bin/python benchmarks/e2e_postfix.py [--runs 3] [--messages 1000]

Both relays are durable (Postfix fsyncs its queue file before 250, smsc-relay its SQLite WAL)
and both forward every message to Postfix's smtp-sink, which writes each received mail to a file
in /dev/shm; a run ends when the sink holds all messages. Postfix is a private instance
(`postfix -c DIR`) on loopback ports; it needs Debian's postfix package installed with
"No configuration" (`debconf-set-selections` + `apt-get install postfix`), which starts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, postfix_tool, relay_config, start_relay, stop, wait_port

MASTER_CF = """\
{port}    inet  n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localdomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = sms.example.com
relayhost = [127.0.0.1]:{sink}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
local_recipient_maps =
smtpd_tls_security_level = none
smtp_tls_security_level = none
maillog_file_prefixes = {dir}
maillog_file = {dir}/maillog
default_process_limit = 100
"""


class Sink:
    """smtp-sink dumping each mail to a file in /dev/shm, so arrivals can be counted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="sink-"))
        os.chmod(self.dir, 0o777)  # smtp-sink runs as nobody
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [*postfix_tool("smtp-sink"), *user, "-d", f"{self.dir}/m.", f"127.0.0.1:{self.port}", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)

    def count(self) -> int:
        return len(os.listdir(self.dir))

    def close(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postfix(tmp: Path, port: int, sink: int) -> Path:
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep the postfix user out
    conf = tmp / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(MAIN_CF.format(dir=tmp, sink=sink))
    (conf / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{port}"))
    for sub in ("queue", "data"):
        (tmp / sub).mkdir()
    shutil.chown(tmp / "data", "postfix")
    # postfix reports to syslog, of which a container may have none; the log file says why.
    if subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True).returncode:
        raise RuntimeError("postfix did not start:\n" + (tmp / "maillog").read_text(errors="replace")[-2000:])
    wait_port(port)
    return conf


def one_run(kind: str, sessions: int, messages: int) -> float:
    """`-N`: each mail to a phone of its own (a sequence number before 7999000), as in accept.py:
    the same text to one phone would be a repeat under the relay's phone limits, never sent."""
    sink = Sink()
    tmp = Path(tempfile.mkdtemp(prefix=f"e2e-{kind}-"))
    port = free_port()
    relay = None
    conf = None
    try:
        if kind == "postfix":
            conf = start_postfix(tmp, port, sink.port)
        else:
            relay = start_relay(relay_config(tmp, port, sink.port), port)
        start = time.perf_counter()
        subprocess.run(
            [*postfix_tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", "300",
             "-f", "bench@example.com", "-N", "-t", "7999000@sms.example.com", f"127.0.0.1:{port}"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while sink.count() < messages:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: only {sink.count()} of {messages} arrived")
            time.sleep(0.01)
        return messages / (time.perf_counter() - start)
    finally:
        if relay is not None:
            stop(relay)
        if conf is not None:
            subprocess.run(["postfix", "-c", str(conf), "stop"], capture_output=True)
            time.sleep(1)
        sink.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    missing = [
        m
        for m in (None if shutil.which("postfix") else "postfix", None if os.geteuid() == 0 else "root")
        if m
    ]
    if missing:
        # Say what to do rather than fail on the first subprocess (FileNotFoundError: 'postfix').
        sys.exit(
            "benchmarks/e2e_postfix.py needs Debian's postfix package (it starts nothing itself) and root:\n"
            "  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections\n"
            "  apt-get install -y --no-install-recommends postfix\n"
            f"missing here: {', '.join(missing)}"
        )
    print(f"end to end, msgs/s delivered to the sink, median of {args.runs} alternating runs:")
    print(f"{'sessions':>8} {'Postfix':>8} {'smsc-relay':>11} {'relay/Postfix':>14}  pairs")
    for sessions in (1, 10, 50):
        pf, rl = [], []
        for _ in range(args.runs):
            pf.append(one_run("postfix", sessions, args.messages))
            rl.append(one_run("relay", sessions, args.messages))
        ratios = [r / p for r, p in zip(rl, pf, strict=True)]
        pairs = " ".join(f"{x:.2f}" for x in ratios)
        medians = (
            f"{statistics.median(pf):>8.0f} {statistics.median(rl):>11.0f} {statistics.median(ratios):>14.2f}"
        )
        print(f"{sessions:>8} {medians}  {pairs}", flush=True)


if __name__ == "__main__":
    main()
