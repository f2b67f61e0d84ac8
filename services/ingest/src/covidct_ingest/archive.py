"""Iterate the members of a zip archive (bytes or path), skipping folders and DICOMDIR."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from covidct_core.errors import PermanentError
from covidct_ingest import codes

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
MAX_ARCHIVE_BYTES = 32 * 1024**3


def is_zip_bytes(data: bytes) -> bool:
    return data[:4] in ZIP_MAGIC


def is_zip_file(path: Path) -> bool:
    try:
        with Path(path).open("rb") as handle:
            return is_zip_bytes(handle.read(4))
    except OSError:
        return False


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    base = parts[-1] if parts else ""
    return (
        name.endswith("/")
        or not base
        or base.upper() == "DICOMDIR"
        or "__MACOSX" in parts
        or base.startswith("._")
    )


def iter_zip_members(
    source: bytes | Path, *, max_total_bytes: int = MAX_ARCHIVE_BYTES
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, member bytes)`` for every file member of a zip archive.

    Folders, DICOMDIR files and macOS resource forks are skipped. An unreadable archive, an
    encrypted or damaged member raise ``CORRUPT_FILE``; an archive whose members add up to
    more than ``max_total_bytes`` (uncompressed) raises ``ARCHIVE_TOO_LARGE`` before any read.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes | bytearray) else Path(source)
    try:
        with zipfile.ZipFile(handle) as archive:
            members = [info for info in archive.infolist() if not _skipped(info.filename)]
            total = sum(info.file_size for info in members)
            if total > max_total_bytes:
                raise PermanentError(
                    codes.ARCHIVE_TOO_LARGE,
                    f"archive expands to {total} bytes, more than {max_total_bytes}",
                )
            for info in members:
                yield info.filename, archive.read(info)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,  # unsupported compression method
        RuntimeError,  # encrypted member
        OSError,
        EOFError,  # truncated archive
    ) as e:
        raise PermanentError(codes.CORRUPT_FILE, f"unreadable zip archive: {e}") from e
