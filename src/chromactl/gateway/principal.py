"""Who a request comes from and what that identity may touch."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from chromactl.config import Grant as GrantConfig


class Role(enum.IntEnum):
    """Roles, ordered: each one may do everything the ones below it may."""

    READER = 1
    WRITER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        return cls[name.upper()]


ALL = "*"


class Reach(enum.Enum):
    """How much of Chroma a request touches, which decides the grant it needs."""

    #: Nothing tenant-specific (pre-flight checks, the identity): any grant will do.
    ANY = "any"
    #: One tenant, read as a whole (``GET /tenants/{t}``, list its databases).
    TENANT = "tenant"
    #: Every database of one tenant (create a database, rename a tenant).
    WHOLE_TENANT = "whole_tenant"
    #: One database of one tenant (collections and records).
    DATABASE = "database"
    #: All of Chroma (create a tenant, reset, the agent API).
    EVERYTHING = "everything"


#: How many decisions a principal remembers (it forgets them all past this).
_DECISIONS = 1024


def _is_literal(pattern: str) -> bool:
    return not any(ch in pattern for ch in "*?[")


@dataclass(frozen=True, slots=True)
class Grant:
    """A role over tenants and databases given as wildcard patterns."""

    role: Role
    tenants: tuple[str, ...] = (ALL,)
    databases: tuple[str, ...] = (ALL,)
    #: Requests of a Chroma 0.x client, translated by the gateway, are allowed.
    legacy_clients: bool = True

    @classmethod
    def from_config(cls, cfg: GrantConfig) -> Grant:
        return cls(Role.parse(cfg.role), tuple(cfg.tenants), tuple(cfg.databases), cfg.legacy_clients)

    def covers_tenant(self, tenant: str) -> bool:
        """Some part of ``tenant`` is covered (enough to read the tenant itself)."""
        return any(fnmatchcase(tenant, p) for p in self.tenants)

    def covers_database(self, tenant: str, database: str) -> bool:
        if not self.covers_tenant(tenant):
            return False
        qualified = f"{tenant}/{database}"
        return any(
            fnmatchcase(qualified, p) if "/" in p else fnmatchcase(database, p) for p in self.databases
        )

    def covers_whole_tenant(self, tenant: str) -> bool:
        """Every database of ``tenant``, present or future, is covered."""
        return self.covers_tenant(tenant) and any(
            p == ALL or p in (f"{tenant}/*", "*/*") for p in self.databases
        )

    def covers_everything(self) -> bool:
        return ALL in self.tenants and ALL in self.databases


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user id, how it was proven, and its grants."""

    user_id: str
    method: str
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    #: The answers of :meth:`may` so far (the grants never change): the tenants and databases
    #: a caller works in are decided once, not matched against the patterns per request.
    _decided: dict[tuple[Role, Reach, str, str], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def may(self, role: Role, reach: Reach, tenant: str = "", database: str = "") -> bool:
        """Whether one grant of at least ``role`` covers ``reach`` of tenant/database."""
        key = (role, reach, tenant, database)
        decided = self._decided.get(key)
        if decided is None:
            if len(self._decided) >= _DECISIONS:
                self._decided.clear()
            decided = self._decided[key] = self._may(role, reach, tenant, database)
        return decided

    def _may(self, role: Role, reach: Reach, tenant: str, database: str) -> bool:
        for g in self.grants:
            if g.role < role:
                continue
            if (
                reach is Reach.ANY
                or (reach is Reach.EVERYTHING and g.covers_everything())
                or (reach is Reach.TENANT and g.covers_tenant(tenant))
                or (reach is Reach.WHOLE_TENANT and g.covers_whole_tenant(tenant))
                or (reach is Reach.DATABASE and g.covers_database(tenant, database))
            ):
                return True
        return False

    @property
    def legacy_clients(self) -> bool:
        """Requests of Chroma 0.x clients are allowed (no grant of this caller says otherwise)."""
        return all(g.legacy_clients for g in self.grants)

    def identity(self) -> dict[str, object]:
        """The ``/api/v2/auth/identity`` answer: exactly user_id, tenant, databases."""
        tenants = [t for g in self.grants for t in g.tenants]
        literal_tenants = list(dict.fromkeys(t for t in tenants if _is_literal(t)))
        tenant = literal_tenants[0] if len(literal_tenants) == 1 and ALL not in tenants else ALL
        if not tenants:
            tenant = "default_tenant"
        dbs: list[str] = []
        for g in self.grants:
            for d in g.databases:
                name = d.split("/", 1)[1] if "/" in d else d
                dbs.append(name if _is_literal(name) else ALL)
        databases = [ALL] if ALL in dbs else list(dict.fromkeys(dbs))
        return {"user_id": self.user_id, "tenant": tenant, "databases": databases}


#: The caller when authentication is turned off.
ANONYMOUS_ADMIN = Principal("anonymous", "none", (Grant(Role.ADMIN),))
