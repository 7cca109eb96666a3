"""Input files that are local paths or fsspec URLs (``s3://``, ``gs://``, ``file://``, ...).

Image discovery and reading go through these few functions, so a plate stored in object
storage is read the same way as a local folder (the URL's filesystem package, e.g.
``s3fs``, must be installed where the work runs). Outputs are always local.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def is_url(path) -> bool:
    return "://" in str(path)


def _fs(path: str):
    import fsspec

    return fsspec.core.url_to_fs(str(path))


@contextlib.contextmanager
def open_binary(path) -> Iterator[IO[bytes]]:
    """Open a local path or URL for binary reading."""
    if is_url(path):
        import fsspec

        with fsspec.open(str(path), "rb") as handle:
            yield handle
    else:
        with open(path, "rb") as handle:
            yield handle


def exists(path) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.exists(inner)
    return Path(path).exists()


def is_dir(path) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.isdir(inner)
    return Path(path).is_dir()


def is_file(path) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.isfile(inner)
    return Path(path).is_file()


def size(path) -> int:
    if is_url(path):
        fs, inner = _fs(path)
        return int(fs.size(inner))
    return Path(path).stat().st_size


def name(path) -> str:
    """The file name (last path component)."""
    return posixpath.basename(str(path).rstrip("/")) if is_url(path) else Path(path).name


def parent_name(path) -> str:
    """The name of the folder holding ``path``."""
    if is_url(path):
        return posixpath.basename(posixpath.dirname(str(path).rstrip("/")))
    return Path(path).parent.name


def join(root, relative: str) -> str:
    return f"{str(root).rstrip('/')}/{relative}" if is_url(root) else str(Path(root) / relative)


def list_files(root) -> list[tuple[str, str]]:
    """Every file under ``root``, recursively: (full path or URL, path relative to root)."""
    if is_url(root):
        fs, inner = _fs(root)
        protocol = str(root).split("://", 1)[0]
        found = []
        for item in sorted(fs.find(inner)):
            relative = posixpath.relpath(item, inner)
            found.append((f"{protocol}://{item}" if not item.startswith(f"{protocol}://") else item, relative))
        return found
    base = Path(root)
    return [(str(p), p.relative_to(base).as_posix()) for p in sorted(base.rglob("*")) if p.is_file()]


def read_bytes(path) -> bytes:
    with open_binary(path) as handle:
        return handle.read()
