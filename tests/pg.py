"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl of Debian's `postgresql`, a
Unix socket in a temp dir, never the system service. As root it runs as the `postgres` user
(the server refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


def bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    assert found, "PostgreSQL is missing: `apt-get install postgresql` (scripts/test-deps.sh does)"
    return Path(found[-1]).parent


class Cluster:
    """A cluster in a temp dir of its own; `stop()` and `start()` it as an outage would."""

    def __init__(self, durable: bool = False) -> None:
        """`durable`: fsync as a production server does (benchmarks); tests need not."""
        # Not pytest's tmp dir (root-only when run as root): the server's user must reach it.
        self.base = Path(tempfile.mkdtemp(prefix="smsc-relay-pg-"))
        self.data, sock = self.base / "data", self.base / "sock"
        sock.mkdir(parents=True)
        self.user: pwd.struct_passwd | None = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.user is not None:
            shutil.chown(self.base, self.user.pw_uid, self.user.pw_gid)
            shutil.chown(sock, self.user.pw_uid, self.user.pw_gid)
        self.bin = bindir()
        self.options = f"-k {sock} -c listen_addresses=''"
        if not durable:
            self.options += " -c fsync=off -c full_page_writes=off"
        self.dsn = f"host={sock} user=relay dbname=postgres"
        self.run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "relay",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def run(self, *args: str) -> None:
        user = self.user

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        subprocess.run(args, check=True, capture_output=True, timeout=120, preexec_fn=demote, cwd=self.base)

    def start(self) -> None:
        log = str(self.base / "pg.log")
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", self.options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """As a crash or a lost server: connections are cut, nothing is shut down cleanly."""
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster in a new temp dir; stop and remove it after."""
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.base, ignore_errors=True)


def new_database(dsn: str) -> str:
    """A new empty database on the cluster at `dsn`; returns its DSN."""
    name = f"t{uuid.uuid4().hex}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.replace("dbname=postgres", f"dbname={name}")
