"""Unpack a dataset archive once into the cache, safely and atomically.

``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` are supported. Members are checked before anything is
written: absolute paths, ``..`` components, links and device files are refused (an archive from the
internet must not write outside its folder). Extraction goes to a temporary folder that is renamed
into place only when complete, so an interrupted unpack is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from toolchain.data.base import cache_dir
from toolchain.errors import DataError

#: refuse archives that would unpack to more than this (a decompression bomb or the wrong file)
MAX_UNPACKED_BYTES = 8 * 1024**3


def unpacked(archive: Path, data_root: Path) -> Path:
    """The folder holding ``archive``'s contents, unpacking it into the cache on first use.

    The cache key is the archive's name, size and modification time, so a replaced archive is
    unpacked again.
    """
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir(data_root) / "unpacked" / f"{_stem(archive)}-{key}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        _extract(archive, tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent unpack that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_member(archive: Path, name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: refusing archive member {name!r} (it points outside the archive)")


def _extract(archive: Path, dest: Path) -> None:
    name = archive.name
    try:
        if name.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                total = 0
                for member in members:
                    _check_member(archive, member.name)
                    if not (member.isfile() or member.isdir()):
                        raise DataError(
                            f"{archive}: refusing archive member {member.name!r} (links and special "
                            "files are not allowed in a dataset archive)"
                        )
                    total += member.size
                _check_size(archive, total)
                tar.extractall(dest, members=members, filter="data")
        elif name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_member(archive, info.filename)
                _check_size(archive, sum(i.file_size for i in infos))
                zf.extractall(dest)
        else:
            raise DataError(f"{archive}: unknown archive type; expected .tar, .tar.gz, .tgz or .zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split())  # tarfile's "no method succeeded" message spans lines
        raise DataError(f"{archive}: corrupt or truncated archive ({reason})") from None


def _check_size(archive: Path, total: int) -> None:
    if total > MAX_UNPACKED_BYTES:
        raise DataError(
            f"{archive}: would unpack to {total / 1024**3:.1f} GiB, more than the "
            f"{MAX_UNPACKED_BYTES / 1024**3:.0f} GiB limit"
        )
