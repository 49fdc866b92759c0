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


@contextmanager
def cluster() -> Iterator[str]:
    """Start a cluster in a new temp dir; yields a DSN (libpq key=value) for it. The dir is
    not pytest's (root-only when run as root): the server's user must reach it."""
    base = Path(tempfile.mkdtemp(prefix="smsc-relay-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir(parents=True)
    user: pwd.struct_passwd | None = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(base, user.pw_uid, user.pw_gid)
        shutil.chown(sock, user.pw_uid, user.pw_gid)

    def run(*args: str) -> None:
        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        subprocess.run(args, check=True, capture_output=True, timeout=120, preexec_fn=demote, cwd=base)

    bin_ = bindir()
    run(str(bin_ / "initdb"), "-D", str(data), "-A", "trust", "-U", "relay", "--no-sync", "-E", "UTF8")
    options = f"-k {sock} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    run(str(bin_ / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "pg.log"), "-w", "start")
    try:
        yield f"host={sock} user=relay dbname=postgres"
    finally:
        run(str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def new_database(dsn: str) -> str:
    """A new empty database on the cluster at `dsn`; returns its DSN."""
    name = f"t{uuid.uuid4().hex}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.replace("dbname=postgres", f"dbname={name}")
