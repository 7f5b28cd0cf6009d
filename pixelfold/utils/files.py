"""Writing files so that nothing is lost or half-written, and owning a folder.

* [`atomic_directory`][pixelfold.utils.files.atomic_directory]: write a folder beside its
  target and swap it in; there is never a moment without the target (an atomic exchange where
  the kernel has one, else two renames with recovery of the old folder on the next start);
* [`atomic_write_text`][pixelfold.utils.files.atomic_write_text] /
  [`atomic_write_bytes`][pixelfold.utils.files.atomic_write_bytes]: the same for one file;
* [`disk_errors`][pixelfold.utils.files.disk_errors]: a full disk becomes a
  [`DiskFullError`][pixelfold.utils.errors.DiskFullError] naming the path (libraries report it
  as ``basic_ios::clear: iostream error`` or a Rust ``IoError``);
* [`RunLock`][pixelfold.utils.files.RunLock]: one process at a time writes into an output
  folder; a lock left by a dead process is taken over with a message.

Files and folders get the permissions the user's umask gives any new file (``0o644`` /
``0o755`` with the usual ``022``), not the private ``0o600`` / ``0o700`` of temporary files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DiskFullError, RunFolderError

__all__ = [
    "RunLock",
    "apply_default_modes",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "cleanup_leftovers",
    "default_mode",
    "disk_errors",
    "pid_alive",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# permissions


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it elsewhere
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permissions a new file (or folder) gets from the process's umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def apply_default_modes(path: str | os.PathLike) -> None:
    """Give ``path`` (and, for a folder, everything in it) the umask's default permissions.
    Temporary files and folders (``tempfile``, safetensors) are created private; call this
    before moving them into place."""
    path = Path(path)
    file_mode, dir_mode = default_mode(False), default_mode(True)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in files:
                os.chmod(os.path.join(root, name), file_mode)
            for name in dirs:
                os.chmod(os.path.join(root, name), dir_mode)
        os.chmod(path, dir_mode)
    else:
        os.chmod(path, file_mode)


# ---------------------------------------------------------------------------------------------
# disk full


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_SPACE_TEXT = re.compile(r"no space left|disk quota|StorageFull|os error 28", re.IGNORECASE)
# what a C++ stream (torch.save) says when a write fails, full disk or not
_STREAM_ERROR_TEXT = re.compile(r"basic_ios::clear|iostream error|file write failed",
                                re.IGNORECASE)


def _free_bytes(path: Path) -> int | None:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _is_disk_full(exc: BaseException, path: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return True
    if _NO_SPACE_TEXT.search(str(exc)):
        return True
    if _STREAM_ERROR_TEXT.search(str(exc)):
        free = _free_bytes(path)
        return free is not None and free < (64 << 20)
    return False


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike, cleanup: str | os.PathLike | None = None
                ) -> Iterator[None]:
    """Report a full disk while writing ``path`` as a
    [`DiskFullError`][pixelfold.utils.errors.DiskFullError] naming it (after removing
    ``cleanup``, the partial output, if given). Other errors pass unchanged."""
    path = Path(path)
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not _is_disk_full(exc, path):
            raise
        if cleanup is not None:
            _remove(Path(cleanup))
        free = _free_bytes(path)
        where = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
        raise DiskFullError(errno.ENOSPC, f"no space left on the device while writing {path}"
                            f"{where}; the partial output was removed", str(path)) from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---------------------------------------------------------------------------------------------
# atomic files and folders


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling renamed into place: readers see
    the old file or the new one, never a partial one. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with disk_errors(path, cleanup=tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode(False))
        os.replace(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """[`atomic_write_bytes`][pixelfold.utils.files.atomic_write_bytes] of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_EXCHANGE = _renameat2()


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``). Returns
    ``False`` where the system or file system cannot (the caller falls back to renames)."""
    if _EXCHANGE is None or os.environ.get("PIXELFOLD_NO_EXCHANGE"):
        return False
    if _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM,
               getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)):
        return False
    raise OSError(err, os.strerror(err), str(a))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _leftover_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)(-.*)?$")


def cleanup_leftovers(target: str | os.PathLike, *, force: bool = False) -> list[str]:
    """Recover from an interrupted [`atomic_directory`][pixelfold.utils.files.atomic_directory]
    swap of ``target``, then remove its leftovers.

    If ``target`` is missing but an old copy (``.NAME.old-PID``) was left by a killed process,
    the old copy is put back (it was complete; the new one may not be). Temporary and old
    folders of processes that no longer run (every one with ``force``, for a caller that owns
    the parent folder) are removed. Returns what was done, one entry per action."""
    target = Path(target)
    parent, done = target.parent, []
    if not parent.is_dir():
        return done
    pattern = _leftover_re(target.name)
    found = []
    for entry in parent.iterdir():
        m = pattern.match(entry.name)
        if m:
            found.append((m.group(1), int(m.group(2)), entry))
    dead = [(kind, pid, entry) for kind, pid, entry in found
            if force or (pid != os.getpid() and not pid_alive(pid))]
    if not target.exists():
        olds = sorted((e for kind, _, e in dead if kind == "old"), key=lambda p: p.stat().st_mtime)
        if olds:
            os.replace(olds[-1], target)
            done.append(f"restored {target} from {olds[-1].name} (a swap was interrupted)")
            dead = [d for d in dead if d[2] != olds[-1]]
    for _, _, entry in dead:
        _remove(entry)
        done.append(f"removed leftover {entry}")
    for line in done:
        logger.warning("%s", line)
    return done


class atomic_directory:  # noqa: N801 - used like a function
    """Context manager that yields a temporary folder beside ``target`` and, only if the body
    succeeds, swaps it into place.

    The swap never leaves a moment without ``target``: the kernel exchanges the two folders
    atomically where it can (Linux ``renameat2``), else the old folder is renamed aside
    (``.NAME.old-PID``) and the new one into place, and a process killed between the two renames
    leaves the old folder, which [`cleanup_leftovers`][pixelfold.utils.files.cleanup_leftovers]
    (called on the next entry) puts back. On an error in the body the temporary folder is
    removed and ``target`` is left as it was; a full disk is reported as a
    [`DiskFullError`][pixelfold.utils.errors.DiskFullError]. The new folder gets the umask's
    permissions.

    Example:
        >>> with atomic_directory("out/model") as tmp:  # doctest: +SKIP
        ...     (tmp / "config.json").write_text("{}")
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        if self.target.exists() and not self.target.is_dir():
            raise NotADirectoryError(f"{self.target} exists and is not a folder")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        cleanup_leftovers(self.target)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-{os.getpid()}-",
                                         dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.tmp is not None
        tmp = self.tmp
        if exc_type is not None:
            _remove(tmp)
            if exc is not None and isinstance(exc, Exception) and _is_disk_full(exc, tmp):
                raise DiskFullError(errno.ENOSPC, f"no space left on the device while writing "
                                    f"{self.target}; it was left as it was",
                                    str(self.target)) from None
            return False
        try:
            with disk_errors(self.target, cleanup=tmp):
                apply_default_modes(tmp)
                _fsync_dir(tmp)
                swap_into_place(tmp, self.target)
        except BaseException:
            _remove(tmp)
            raise
        return False


def swap_into_place(new: Path, target: Path) -> None:
    """Move the folder ``new`` to ``target``, replacing an existing ``target`` without a moment
    where it is missing (see [`atomic_directory`][pixelfold.utils.files.atomic_directory])."""
    if not target.exists():
        os.replace(new, target)
    elif exchange_paths(new, target):
        _remove(new)  # now holds the old folder
    else:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(target, old)
        try:  # an interrupt (Ctrl-C) between the two renames puts the old folder back
            _between_renames()
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise
        _remove(old)
    _fsync_dir(target.parent)


def _between_renames() -> None:
    """Test hook: a crash-recovery test makes the process die here."""
    if os.environ.get("PIXELFOLD_TEST_DIE_BETWEEN_RENAMES"):
        os._exit(9)


# ---------------------------------------------------------------------------------------------
# owning a folder


class RunLock:
    """An exclusive lock on a folder for the lifetime of a run: ``FOLDER/.lock`` holds the
    holder's pid, host and start time, and an ``flock`` on it that the kernel releases when the
    process dies.

    A second process gets a [`RunFolderError`][pixelfold.utils.errors.RunFolderError] naming the
    holder. A lock file left by a process that died (same host, pid no longer running, or no
    ``flock`` held) is taken over with a warning naming it.
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._fd: int | None = None
        self.taken_over: dict[str, Any] | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Take the lock or raise [`RunFolderError`][pixelfold.utils.errors.RunFolderError]."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, default_mode(False))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = self._holder()
                who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                       f"(since {holder.get('started', '?')})") if holder else "another process"
                raise RunFolderError(f"{self.folder} is in use by {who}: wait for it to end, "
                                     f"or use another --output-dir (lock file {self.path})"
                                     ) from None
            try:  # the file we locked may have been removed by the previous holder meanwhile
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        else:  # pragma: no cover - needs ten lost races in a row
            raise RunFolderError(f"could not lock {self.path}")
        previous = self._holder()
        if previous:
            self.taken_over = previous
            logger.warning("taking over the stale lock %s left by process %s on %s (started %s), "
                           "which no longer holds it", self.path, previous.get("pid"),
                           previous.get("host"), previous.get("started"))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
