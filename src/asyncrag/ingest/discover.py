"""Turn the paths a user gave into the files to ingest, and the ones we must refuse."""

from __future__ import annotations

from pathlib import Path

from asyncrag.ingest.read import SUFFIXES
from asyncrag.results import Failure


def discover(paths: list[str | Path], max_file_bytes: int) -> tuple[list[Path], list[Failure]]:
    """Files under `paths` (folders recursively, hidden entries skipped), sorted and unique.

    In folders, files of other types are skipped quietly; a file named explicitly must be supported.
    """
    files: dict[Path, None] = {}
    failures: list[Failure] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = (
                p
                for p in sorted(given.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(given).parts)
            )
        elif given.is_file():
            if given.suffix.lower() not in SUFFIXES:
                failures.append(Failure(str(given), f"unsupported file type (supported: {', '.join(sorted(SUFFIXES))})"))
                continue
            found = iter([given])
        else:
            failures.append(Failure(str(given), "no such file or directory"))
            continue
        for path in found:
            size = path.stat().st_size
            if size > max_file_bytes:
                failures.append(
                    Failure(str(path), f"file is {size / 2**20:.0f} MiB, over the {max_file_bytes / 2**20:.0f} MiB limit (ASYNCRAG_MAX_FILE_MB)")
                )
            else:
                files.setdefault(path, None)
    return list(files), failures
