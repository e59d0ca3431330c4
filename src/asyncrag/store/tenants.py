"""Tenants: several teams' documents in one collection, kept apart by the store itself.

A tenant is a value of the `tenant` field of the chunks and of the document records. Where the
server's upserts allow (Milvus Lite, Milvus 2.4+: store/milvus.server_partition_key_upserts) it is
the partition key: Milvus keeps each tenant's rows in the partitions its value hashes to, so a
search given `tenant == "x"` reads those alone; on Milvus 2.3.5 it is a plain field (a filtered
search of the whole collection). The field is set on every write and added to every
search, lookup, listing, count and delete by `store/collection.Collection` from its own `tenant`,
never taken from a caller: a user's filter that names the field is refused.

A tenant's document ids are its own: the same file ingested by two tenants is two documents, so
ids (and the chunk ids made from them) are stored as `<tenant>::<id>`, and shown without the prefix.
No tenant (None) is the whole collection, as in a single-user collection or to an admin.
"""

from __future__ import annotations

import re

from asyncrag.config import TENANT_NAME, TENANT_NAME_RULE
from asyncrag.errors import ConfigError, FilterError
from asyncrag.store import expr

FIELD = "tenant"
MAX_LENGTH = 64
_NAME = re.compile(TENANT_NAME)
_SEPARATOR = "::"
BEFORE_TENANTS = "collection {collection!r} was made before tenants: run `asyncrag reindex` to add the tenant field"
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*")


def check_name(name: str) -> str:
    """A tenant's name: 1-64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"invalid tenant name {name!r}: {TENANT_NAME_RULE}")
    return name


def scoped_id(tenant: str | None, doc_id: str) -> str:
    """The id a tenant's document is stored under (unchanged without a tenant)."""
    return doc_id if tenant is None else f"{tenant}{_SEPARATOR}{doc_id}"


def shown_id(tenant: str | None, doc_id: str) -> str:
    """A stored id as its tenant knows it (the inverse of `scoped_id`)."""
    return doc_id if tenant is None else doc_id.removeprefix(f"{tenant}{_SEPARATOR}")


def clause(tenant: str | None) -> str:
    """The expression that keeps a search, lookup or delete within `tenant` ("" for the whole collection)."""
    return "" if tenant is None else expr.equals(FIELD, tenant)


def refuse_field(user_filter: str) -> str:
    """A user's filter, refused if it names the tenant field: isolation is the store's, not the caller's."""
    if FIELD in _code_names(user_filter):
        raise FilterError(f"invalid filter {user_filter!r}: the {FIELD!r} field is set by the server, not by filters")
    return user_filter


def _code_names(text: str) -> set[str]:
    """The identifiers of `text` outside its string literals (and inside `$meta[...]` keys)."""
    code, strings, _ = expr.code_and_strings(text)
    bare = "".join(char for _, char in code)
    names = set(_IDENTIFIER.findall(bare))
    if "$meta" in bare:  # $meta["tenant"]: a field named by a string
        names.update(strings)
    return names
