"""Corpora and synthetic tasks. Tiny Shakespeare ships in ``data/`` and is checked by sha256.

Nothing here downloads: the course must run offline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "TINY_SHAKESPEARE_SHA256",
    "DataFileError",
    "load_tiny_shakespeare",
    "sha256_of_file",
    "tiny_shakespeare_path",
]

#: ``data/`` at the top of the course repository (nlbook is installed with ``pip install -e .``).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: karpathy/char-rnn ``data/tinyshakespeare/input.txt`` (1,115,394 bytes, 65 characters).
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class DataFileError(ValueError):
    """A data file is missing or does not match its recorded checksum."""


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_shakespeare_path(data_dir: str | Path | None = None) -> Path:
    """Path of ``tinyshakespeare.txt`` in ``data_dir`` (default: the course's ``data/``)."""
    return Path(data_dir if data_dir is not None else DATA_DIR) / "tinyshakespeare.txt"


def load_tiny_shakespeare(data_dir: str | Path | None = None, *, verify: bool = True) -> str:
    """Read Tiny Shakespeare as one string, after checking its sha256.

    Args:
        data_dir: folder holding ``tinyshakespeare.txt``; the course's ``data/`` by default.
        verify: compare the file's sha256 with :data:`TINY_SHAKESPEARE_SHA256`.

    Raises:
        DataFileError: naming the file, if it is missing or its checksum differs (an altered
            or truncated file would silently change every loss in the course).
    """
    path = tiny_shakespeare_path(data_dir)
    if not path.is_file():
        raise DataFileError(
            f"Tiny Shakespeare not found at {path}. The course ships it in data/; restore it "
            f"with `git checkout -- data/tinyshakespeare.txt` (nothing is downloaded)."
        )
    if verify:
        found = sha256_of_file(path)
        if found != TINY_SHAKESPEARE_SHA256:
            raise DataFileError(
                f"{path} has sha256 {found}, expected {TINY_SHAKESPEARE_SHA256}: the file was "
                f"altered or truncated. Restore it with `git checkout -- data/tinyshakespeare.txt`."
            )
    return path.read_text(encoding="utf-8")
