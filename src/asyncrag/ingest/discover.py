"""Turn the paths a user gave into the files to ingest (with their document ids), and the ones we must refuse.

Every problem is one item's failure, never the run's: a missing path, an unreadable file or
folder, an unsupported or oversized file, a folder with nothing to ingest.

A document's id is its resolved absolute path, so the same file is one document however it was
named (`docs/a.md`, `./docs/../docs/a.md`, `/abs/docs/a.md`) and two folders' `README.md`s never
collide. With a prefix, it is the prefix plus the path relative to the root it was found under
(a file named directly: its folder), so that the same corpus mounted elsewhere, or ingested by
workers on other machines, keeps its ids.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from asyncrag.ingest.read import SUFFIXES
from asyncrag.results import Failure
from asyncrag.store import tenants

SUPPORTED = f"supported: {', '.join(sorted(SUFFIXES))}"


@dataclass(frozen=True)
class Found:
    path: Path  # as given, or found under a given folder: what people see as the source
    doc_id: str


@dataclass
class Discovery:
    files: list[Found] = field(default_factory=list)  # to ingest
    failures: list[Failure] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # ids of every supported file seen, refused ones too
    folders: list[str] = field(default_factory=list)  # id prefixes of the given folders
    named: set[str] = field(default_factory=set)  # ids of the files named directly (found or not)
    blind: bool = False  # a folder could not be read: what it holds is unknown

    def may_prune(self, doc_id: str) -> bool:
        """Whether `doc_id` is under the given paths and gone from them: `--prune` deletes only those.

        Files that exist but failed (unreadable, too large) are present, and kept; nothing is
        pruned under roots that could not be read in full.
        """
        if doc_id in self.present or self.blind:
            return False
        return doc_id in self.named or any(doc_id.startswith(prefix) for prefix in self.folders)


def doc_id_for(path: Path, base: Path, prefix: str | None) -> str:
    """`path`'s document id; `base` is the folder it was found under (given, or the file's own)."""
    if prefix is None:
        return str(path.resolve())
    return prefix + Path(os.path.relpath(path, base)).as_posix()


def in_shard(doc_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether `doc_id` belongs to shard i of n (i counts from 0): a stable hash, the same on every machine."""
    if shard is None:
        return True
    index, count = shard
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") % count == index


def discover(
    paths: list[str | Path], max_file_bytes: float, doc_id_prefix: str | None = None, tenant: str | None = None
) -> Discovery:
    """Files under `paths` (folders recursively, hidden entries skipped), in order and one per document.

    In folders, files of other types are skipped quietly; a file named explicitly must be supported.
    A tenant's ids are its own (store/tenants.py).
    """

    def doc_id(path: Path, base: Path) -> str:
        return tenants.scoped_id(tenant, doc_id_for(path, base, doc_id_prefix))

    found_ids: dict[str, Found] = {}
    result = Discovery()
    for given in map(Path, paths):
        if given.is_dir():
            base = given
            found, errors, odd = _walk(given)
            result.failures += errors + odd
            result.blind |= bool(errors)
            result.present.update(doc_id(Path(f.path), base) for f in odd)
            folder = str(given.resolve()) + os.sep if doc_id_prefix is None else doc_id_prefix
            result.folders.append(tenants.scoped_id(tenant, folder))
            if not found and not errors:
                result.failures.append(Failure(str(given), f"no files to ingest in this folder ({SUPPORTED})"))
        else:
            base = given.parent
            result.named.add(doc_id(given, base))
            problem = _not_a_file(given)
            if problem:
                result.failures.append(Failure(str(given), problem))
                continue
            found = [given]
        for path in found:
            found_id = doc_id(path, base)
            result.present.add(found_id)
            problem = _refusal(path, max_file_bytes)
            if problem:
                result.failures.append(Failure(str(path), problem))
            else:
                found_ids.setdefault(found_id, Found(path, found_id))
    result.files = list(found_ids.values())
    return result


def _not_a_file(given: Path) -> str | None:
    if given.is_file():
        return None if given.suffix.lower() in SUFFIXES else f"unsupported file type ({SUPPORTED})"
    if given.exists():
        return "not a regular file (a pipe, device or socket)"
    return "broken symbolic link" if given.is_symlink() else "no such file or directory"


def _walk(folder: Path) -> tuple[list[Path], list[Failure], list[Failure]]:
    """Supported files under `folder`, sorted; unreadable subfolders, and entries named like a
    document that are no file (a pipe, a device, a broken link), are failures, not silence."""
    found: list[Path] = []
    failures: list[Failure] = []
    odd: list[Failure] = []

    def unreadable(error: OSError) -> None:
        failures.append(Failure(str(error.filename), f"cannot read folder: {error.strerror}"))

    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root, name)
            if name.startswith(".") or path.suffix.lower() not in SUFFIXES:
                continue
            problem = _not_a_file(path)
            if problem:
                odd.append(Failure(str(path), problem))
            else:
                found.append(path)
    return found, failures, odd


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
