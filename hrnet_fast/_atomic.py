"""Atomic file writes: every file hrnet_fast writes (``predict --out``, ``eval --json``, ``bench --json``, the
drawings of ``--draw`` and ``--draw-video``, ``export_onnx``) goes through here.

A file is written to a temporary file in the destination's folder and renamed onto the destination with
``os.replace`` only once it is complete. A failed write (a full disk, a file-size limit, an exception, Ctrl-C)
therefore never leaves a truncated file and never destroys the previous file at that path; the temporary file
is removed on failure. (A process killed with SIGKILL may leave its hidden ``.NAME.*.tmpEXT`` behind, never a
half-written NAME.)

    with atomic_open("keypoints.json") as fh:          # a text file
        json.dump(results, fh)
    write_json("stats.json", stats, indent=2)          # the same, for one JSON document
    write_bytes("drawn/a.jpg", encoded)                # bytes
    with atomic_path("out.mp4") as tmp:                # for writers that take a path (OpenCV, onnx)
        writer = cv2.VideoWriter(tmp, ...)             # tmp keeps the extension (".mp4"): writers choose by it

Standard library only (imported by the command line before torch).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from typing import IO, Any, Iterator, Optional, Union

__all__ = ["atomic_open", "atomic_path", "write_bytes", "write_json", "writable_problem"]

PathLike = Union[str, "os.PathLike[str]"]
_UMASK: Optional[int] = None
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read once (``os.umask`` can only be read by setting it)."""
    global _UMASK
    with _UMASK_LOCK:
        if _UMASK is None:
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
        return _UMASK


def _temp_for(path: str) -> str:
    """A new empty hidden file beside ``path`` with the same extension: ``folder/.NAME.XXXXXX.tmpEXT``."""
    folder, name = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(name)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=f".tmp{ext}")
    os.close(fd)
    return tmp


def _finish(tmp: str, path: str) -> None:
    """Give ``tmp`` the mode a new file at ``path`` would have (the existing file's, else 0666 & ~umask; mkstemp
    makes it 0600) and rename it onto ``path``."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    with contextlib.suppress(OSError):  # a filesystem without modes (some mounts): keep what it gives
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike, fsync: bool = True) -> Iterator[str]:
    """A temporary path beside ``path`` (same folder, same extension) for a writer that takes a path; renamed
    onto ``path`` when the block ends without an exception, removed when it raises (the exception goes on).

    ``fsync``: flush the file to the disk before the rename (off for many small files, e.g. drawings)."""
    path = os.fspath(path)
    tmp = _temp_for(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        _finish(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", fsync: bool = True, **kwargs) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that replaces ``path`` only when the block ends without an exception. ``mode``: "w" or "wb"."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def write_json(path: PathLike, obj: Any, indent: Optional[int] = None, allow_nan: bool = True) -> None:
    """``json.dump(obj)`` to ``path``, atomically. ``allow_nan=False``: a NaN or infinity raises ``ValueError``
    before anything is replaced (JSON has no NaN; ``json`` would write the non-standard literal ``NaN``)."""
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan)  # serialise first: a bad value replaces nothing
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: PathLike, data: bytes, fsync: bool = True) -> None:
    """``data`` to ``path``, atomically."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)


def writable_problem(path: PathLike) -> Optional[str]:
    """Why ``path`` cannot be written atomically (None when it can): it is a folder, its folder does not exist,
    or no file can be created in its folder. Probes by creating (and removing) a temporary file there."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "is a directory; expected a file path"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"its folder {folder} does not exist"
    try:
        os.remove(_temp_for(path))
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    return None
