"""Files and directories flowcept_dist creates are its owner's only: directories 0700, files 0600.

Records hold every task's arguments and results, stats files name hosts and errors, checkpoints hold
model weights. On a shared machine (login nodes, a cluster's shared filesystem) the usual umask 022
would make all of them readable by every user. So every module that creates a file or directory of its
own goes through here, whatever the umask: the LMDB store, stats snapshots, migrate checkpoints, the
settings file written by ``init-settings``, torch checkpoints, the consumer spool and offline buffers.

- :func:`private_dir` creates a directory and its missing parents with mode 0700. A directory that
  already exists is left as it is: whoever made it chose its mode (e.g. a store shared with a group on
  purpose).
- :func:`open_private` is :func:`open` for files of ours: a file it creates gets mode 0600, and one of
  ours opened for writing that others can read is tightened to 0600 (the owner's bits are kept).
  Missing parent directories are created with :func:`private_dir`.
- :func:`write_private` replaces a file atomically (temporary file, then rename) with a private one.

Sharing on purpose: files keep the mode they were created with (LMDB never re-creates its files), so
``chmod -R g+rX DIR`` after the first write lets a group read a store; see docs/security.md.
"""

from __future__ import annotations

import os
import stat

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str) -> str:
    """Create ``path`` and its missing parents with mode 0700 (any umask); return its absolute path.

    Existing directories keep their mode. Safe against other processes creating the same directories.
    Raises ``OSError`` as :func:`os.makedirs` does (e.g. a file is in the way, no permission).
    """
    path = os.path.abspath(os.path.expanduser(path))
    missing = []
    cur = path
    while not os.path.isdir(cur):
        missing.append(cur)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
            continue  # made by another process meanwhile: its mode is its creator's
        os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask; the umask must not widen or narrow it
    return path


def _flags(mode: str) -> int:
    flags = getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_RDWR if "+" in mode else os.O_WRONLY
    if "w" in mode:
        flags |= os.O_CREAT | os.O_TRUNC
    elif "a" in mode:
        flags |= os.O_CREAT | os.O_APPEND
    elif "x" in mode:
        flags |= os.O_CREAT | os.O_EXCL
    return flags


def _tighten(fd: int) -> None:
    """Drop group and other bits of a regular file of ours (kept when it is someone else's)."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)


def open_private(path: str, mode: str = "r", encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None, buffering: int = -1):
    """Like :func:`open`, but a file created or written here is readable by its owner only (0600).

    Reading (``"r"``, ``"rb"``) is plain :func:`open`. Writing modes (``w a x`` and ``+``, text or
    binary) create missing parent directories with :func:`private_dir`.
    """
    if not any(c in mode for c in "wax+"):
        return open(path, mode, buffering, encoding, errors, newline)
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if not os.path.isdir(parent):
        private_dir(parent)
    fd = os.open(os.path.expanduser(path), _flags(mode), FILE_MODE)
    try:
        _tighten(fd)
        return os.fdopen(fd, mode, buffering, encoding, errors, newline)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str, data: bytes | str, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically (a reader sees the old or the new file, never half of one).

    The file is private (0600). ``fsync``: flush to disk before the rename (survives a machine crash).
    """
    path = os.path.expanduser(path)
    tmp = f"{path}.{os.getpid()}.{os.urandom(3).hex()}.tmp"
    try:
        with open_private(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
