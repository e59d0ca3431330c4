"""Turn the paths a user gave into the files to ingest, and the ones we must refuse.

Every problem is one item's failure, never the run's: a missing path, an unreadable file or
folder, an unsupported or oversized file, a folder with nothing to ingest.
"""

from __future__ import annotations

import os
from pathlib import Path

from asyncrag.ingest.read import SUFFIXES
from asyncrag.results import Failure

SUPPORTED = f"supported: {', '.join(sorted(SUFFIXES))}"


def discover(paths: list[str | Path], max_file_bytes: float) -> tuple[list[Path], list[Failure]]:
    """Files under `paths` (folders recursively, hidden entries skipped), in order and unique.

    In folders, files of other types are skipped quietly; a file named explicitly must be supported.
    """
    files: dict[Path, None] = {}
    failures: list[Failure] = []
    for given in map(Path, paths):
        if given.is_dir():
            found, errors = _walk(given)
            failures += errors
            if not found and not errors:
                failures.append(Failure(str(given), f"no files to ingest in this folder ({SUPPORTED})"))
        elif given.is_file():
            if given.suffix.lower() not in SUFFIXES:
                failures.append(Failure(str(given), f"unsupported file type ({SUPPORTED})"))
                continue
            found = [given]
        elif given.is_symlink():
            failures.append(Failure(str(given), "broken symbolic link"))
            continue
        elif given.exists():
            failures.append(Failure(str(given), "not a regular file or folder"))
            continue
        else:
            failures.append(Failure(str(given), "no such file or directory"))
            continue
        for path in found:
            problem = _refusal(path, max_file_bytes)
            if problem:
                failures.append(Failure(str(path), problem))
            else:
                files.setdefault(path, None)
    return list(files), failures


def _walk(folder: Path) -> tuple[list[Path], list[Failure]]:
    """Supported files under `folder`, sorted; unreadable subfolders are failures, not silence."""
    found: list[Path] = []
    failures: list[Failure] = []

    def unreadable(error: OSError) -> None:
        failures.append(Failure(str(error.filename), f"cannot read folder: {error.strerror}"))

    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root, name)
            if not name.startswith(".") and path.suffix.lower() in SUFFIXES and path.is_file():
                found.append(path)
    return found, failures


def _refusal(path: Path, max_file_bytes: float) -> str | None:
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot read file: {e.strerror}"
    if not os.access(path, os.R_OK):
        return "cannot read file: permission denied"
    if size > max_file_bytes:
        return f"file is {size / 2**20:.1f} MiB, over the {max_file_bytes / 2**20:g} MiB limit (ASYNCRAG_MAX_FILE_MB)"
    return None
