"""The `for_each` resources every client shares (Cloud Foundation Fabric style), typed.

One Terraform resource per role for all clients of a stack, keyed by stable keys (`<client>`
or `<client>/<what>`). Each role is ONE typed entry class: its fields are the map's
values, `@role(...)` registers its Terraform type, its resource name (part of every
instance's state address: renaming one moves state) and the builder of its one resource.
The entries live by theme in stacks/client_storage.py, client_messaging.py and client_costs.py.
`ClientResources.add(key, entry)` is plain Python; the resource of a role is made (one jsii
construct) the first time the role gets an entry, its `for_each` a token that
`stacks.deferred` replaces by the entries after synth, so the cost stays one construct per
role whatever the number of clients. What is the same for every client stays literal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from stacks.deferred import deferred
from stacks.props import ClientResourceProps
from stacks.provider import (
    TerraformResource,
)

Builder = Callable[["ClientResources"], TerraformResource]


@dataclass(frozen=True)
class Role:
    """A resource role: its Terraform type, its resource name and how its resource is built."""

    tf_type: str
    name: str
    build: Builder
    # Resources (`<type>.<name>`, whole) this role took over: existing states forget them
    # without destroying their objects (`removed` blocks, `forgotten`).
    replaces: tuple[str, ...] = ()


class Entry:
    """One `for_each` entry; subclasses are frozen dataclasses registered with `@role`."""

    ROLE: ClassVar[Role]

    @classmethod
    def ref(cls, key: str, attribute: str) -> str:
        """`${google_service_account.clients-sa["acme"].email}`: one entry's attribute."""
        return f'${{{cls.ROLE.tf_type}.{cls.ROLE.name}["{key}"].{attribute}}}'

    def value(self) -> dict[str, Any]:
        """The map value Terraform reads as `each.value` (field order kept)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


E = TypeVar("E", bound=type[Entry])
ROLES: dict[type[Entry], Role] = {}


def role(tf_type: str, name: str, build: Builder, replaces: tuple[str, ...] = ()
         ) -> Callable[[E], E]:
    """Register an entry class as the one definition of its resource role (and of the
    resources it `replaces`)."""

    def register(cls: E) -> E:
        if any(r.name == name for r in ROLES.values()):
            raise ValueError(f"client resource name {name!r} is registered twice")
        cls.ROLE = ROLES[cls] = Role(tf_type, name, build, replaces)
        return cls

    return register


def forgotten() -> list[str]:
    """Every resource a role replaced (`Role.replaces`), for the `removed` blocks of a stack
    that holds clients: Terraform forgets their instances without destroying them, so the
    bindings an authoritative policy now holds are never revoked by a member's destroy."""
    old = {address for r in ROLES.values() for address in r.replaces}
    live = old & {f"{r.tf_type}.{r.name}" for r in ROLES.values()}
    if live:  # Terraform refuses a `removed` block for a declared resource
        raise ValueError(f"replaced resources are declared still: {sorted(live)}")
    return sorted(old)


def each(field: str) -> str:
    """The value of `field` in the current `for_each` entry."""
    return f"${{each.value.{field}}}"


class ClientResources:
    """The `for_each` resources of the clients of one stack, keyed by stable keys."""

    def __init__(self, props: ClientResourceProps) -> None:
        self.props = props
        self.scope = props.scope
        self.entries: dict[type[Entry], dict[str, Entry]] = {}
        self.resources: dict[type[Entry], TerraformResource] = {}
        # `moved` blocks from addresses entries had before they were entries (the platform
        # stack writes them; a shard's clients are new to its state).
        self.moved: list[dict[str, str]] = []

    def moved_from(self, old_address: str, kind: type[Entry], key: str) -> None:
        self.moved.append({"from": old_address,
                           "to": f'{kind.ROLE.tf_type}.{kind.ROLE.name}["{key}"]'})

    def add(self, key: str, entry: Entry) -> None:
        kind = type(entry)
        entries = self.entries.get(kind)
        if entries is None:
            entries = self.entries[kind] = {}
            resource = kind.ROLE.build(self)
            resource.add_override("for_each", deferred(lambda: _values(entries)))
            self.resources[kind] = resource
        if key in entries:
            raise ValueError(f"{kind.ROLE.name}: key {key!r} is declared twice")
        entries[key] = entry

    def has(self, kind: type[Entry], key: str) -> bool:
        return key in self.entries.get(kind, {})

    def deps(self, *, key_grant: str | None = None) -> list[Any]:
        grant = self.props.encryption.after(key_grant) if key_grant else []
        return [*self.props.apis, *grant]


def _values(entries: dict[str, Entry]) -> dict[str, dict[str, Any]]:
    return {key: entry.value() for key, entry in entries.items()}
