"""API keys, kept beside the collection they open: `<collection>__keys`, one row per key.

A key is shown once, when it is made, and only its SHA-256 is stored: keys are 256 random bits,
so a fast hash is as safe as a slow one (nothing to guess), and a lookup is one dictionary probe.
Each key has a name (for people: `keys list`, `keys revoke`), a role and, for readers and
writers, usually a tenant (store/tenants.py); a key without a tenant works on the whole collection.
Like the document records, keys live in Milvus: every server of a collection, on any machine,
reads the same keys, and `asyncrag keys` takes the same `--uri` and `--collection` as `serve`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pymilvus import DataType, MilvusClient

from asyncrag.errors import ConfigError
from asyncrag.store import expr, scan, tenants
from asyncrag.store.indexes import create_indexes

SUFFIX = "__keys"
Role = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
PREFIX = "ark_"  # so that a leaked key is recognisable (secret scanners, logs)
MAX_NAME = 128
_VECTOR = "_v"  # Milvus needs a vector field in every collection


@dataclass(frozen=True)
class Key:
    name: str
    role: Role
    tenant: str | None  # None: the whole collection
    created_at: float

    def can(self, role: Role) -> bool:
        """Whether this key may do what `role` may: reader < writer < admin."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def refusal(self, role: Role, what: str = "this") -> str:
        """Why this key may not do `what` (which needs `role`), in one line."""
        return f"{what} needs {_a(role)}'s key or better; yours is {_a(self.role)}'s"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "tenant": self.tenant, "created_at": self.created_at}


def _a(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role


def keys_name(collection: str) -> str:
    return collection + SUFFIX


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check(name: str, role: str, tenant: str | None) -> None:
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ConfigError(f"a key's name must be 1-{MAX_NAME} printable characters, not {name!r}")
    if role not in ROLES:
        raise ConfigError(f"a key's role must be one of {', '.join(ROLES)}, not {role!r}")
    if tenant is not None:
        tenants.check_name(tenant)


def _ensure(client: MilvusClient, collection: str) -> str:
    name = keys_name(collection)
    if client.has_collection(name):
        client.load_collection(name)
        return name
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("name", DataType.VARCHAR, max_length=4 * MAX_NAME, is_primary=True)
    schema.add_field("hash", DataType.VARCHAR, max_length=64)
    schema.add_field("role", DataType.VARCHAR, max_length=16)
    schema.add_field("tenant", DataType.VARCHAR, max_length=tenants.MAX_LENGTH)
    schema.add_field("created_at", DataType.DOUBLE)
    schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index(_VECTOR, index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, consistency_level="Strong")
    create_indexes(client, name, index)
    return name


def add(client: MilvusClient, collection: str, name: str, role: str, tenant: str | None = None) -> str:
    """Make a key and store its hash; returns the key, which is never shown again.
    Raises ConfigError for a bad name, role or tenant, or a name already in use."""
    _check(name, role, tenant)
    table = _ensure(client, collection)
    if client.query(table, filter=expr.equals("name", name), output_fields=["name"], consistency_level="Strong"):
        raise ConfigError(f"there is already a key named {name!r}: revoke it first, or choose another name")
    key = PREFIX + secrets.token_urlsafe(32)
    row = {"name": name, "hash": digest(key), "role": role, "tenant": tenant or "", "created_at": time.time()}
    client.upsert(table, [row | {_VECTOR: [0.0, 0.0]}])
    return key


def revoke(client: MilvusClient, collection: str, name: str) -> bool:
    """Remove the key named `name`; whether there was one."""
    table = keys_name(collection)
    if not client.has_collection(table):
        return False
    client.load_collection(table)
    found = client.query(table, filter=expr.equals("name", name), output_fields=["name"], consistency_level="Strong")
    client.delete(table, filter=expr.equals("name", name))
    return bool(found)


def stored(client: MilvusClient, collection: str) -> dict[str, Key]:
    """Every key, by its hash ({} when none was ever made)."""
    table = keys_name(collection)
    if not client.has_collection(table):
        return {}
    client.load_collection(table)
    fields = ["name", "hash", "role", "tenant", "created_at"]
    return {
        row["hash"]: Key(row["name"], row["role"], row["tenant"] or None, row["created_at"])
        for page in scan.pages(client, table, fields)
        for row in page
    }
