"""Why a file cannot be opened, for people: the path, its owner and mode, the directory's, and the
user the command runs as (SQLite's own word is only "unable to open database file", Python's
"Permission denied"). Used by the config loader and the spool."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def _who(uid: int, gid: int) -> str:
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


def _describe(path: Path) -> str:
    st = path.stat()
    return (
        f"{path} is {_who(st.st_uid, st.st_gid)} {stat.filemode(st.st_mode)} ({oct(st.st_mode & 0o777)[2:]})"
    )


def explain(path: Path, *, write: bool = True) -> str:
    """What stands between this process and reading (and writing, with its -wal/-shm) `path`."""
    me = _who(os.geteuid(), os.getegid()).split(":")[0]
    runs = f"this command runs as {me} (uid {os.geteuid()})"
    fix = "run it as the file's owner (e.g. sudo -u smsc-relay ...) or as root"
    folder = path.parent
    try:
        if not folder.exists():
            return f"the directory {folder} does not exist (the relay creates the spool there when it starts)"
        if not os.access(folder, os.X_OK):
            return f"{_describe(folder)}: {runs}, which cannot enter it; {fix}"
        if path.exists() and not os.access(path, os.R_OK | (os.W_OK if write else 0)):
            return f"permission denied: {_describe(path)}; {runs}; {fix}"
        if write and not os.access(folder, os.W_OK):
            return (f"{_describe(folder)}: {runs}, which cannot write there, and SQLite needs to create "
                    f"{path.name}-wal and -shm beside the spool; {fix}")  # fmt: skip
    except OSError as exc:
        return f"{exc.strerror}: {exc.filename}"
    return ""
