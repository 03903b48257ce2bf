"""Client shards: an environment's clients over several stacks, one Terraform state each.

One state holding every client grows without bound (some 16 resource instances per client at
5 jobs: 16,000 at 1,000 clients), and every plan refreshes all of it. With
`client_shards.count = N`, the clients live in N stacks `<platform stack>-clients-<k>`
(`k = 0..N-1`), each with its own state under `<state_prefix>/clients-<k>`, applied after the
platform stack. `count = 0` keeps them in the platform stack (small environments).

A client's shard is stable: its `shard` when pinned, else a jump consistent hash of its name
(Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014): adding or
removing a client never moves another, and raising the count from N to N+1 moves only about
1/(N+1) of the clients (each move is a state migration, docs/clients.md "Shards").
`client_shards.size` is the most clients one state may hold; synth refuses more and names the
count that fits. Pure: no provider import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SHARD_STACK_INFIX = "-clients-"
SHARD_STATE_DIR = "clients-"
# Enough for 10,000 clients at the default size with headroom, few enough that listing the
# stacks stays readable.
MAX_SHARDS = 1000
# Per client at 5 jobs, 14 to 17 instances (a bucket, 2 identities, one authoritative IAM
# policy each for the bucket, run-<c> and the results topic and subscription, the topic and
# subscription, a notification per job; a channel and a budget with billing, an impersonation
# policy with a principal): 130 clients keep a state under ~2,200 instances, within the
# 2,500 per state that CKV_GPUB_LIM_11 checks on the synthesized stack.
DEFAULT_SHARD_SIZE = 130


class ClientShards(BaseModel):
    """How an environment's clients are spread over stacks (environments.yaml `client_shards`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    count: Annotated[int, Field(ge=0, le=MAX_SHARDS)] = 0  # 0: in the platform stack
    size: Annotated[int, Field(ge=1)] = DEFAULT_SHARD_SIZE  # the most clients one state holds


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash of a 64-bit key into `buckets` buckets."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def hashed_shard(name: str, count: int) -> int:
    """The shard of an unpinned client (sha256 of the name: the same on every machine)."""
    return jump_hash(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"), count)


def shard_of(name: str, pinned: int | None, count: int) -> int:
    return pinned if pinned is not None else hashed_shard(name, count)


def assign(clients: Iterable[tuple[str, int | None]], count: int) -> dict[int, list[str]]:
    """Shard index -> client names (declaration order kept); `count` 0: all in shard 0."""
    out: dict[int, list[str]] = {}
    for name, pinned in clients:
        out.setdefault(shard_of(name, pinned, count) if count else 0, []).append(name)
    return out


def count_that_fits(clients: Sequence[tuple[str, int | None]], size: int) -> int | None:
    """The smallest count whose fullest shard holds at most `size` clients (None: none does,
    because pinned clients alone overfill a shard)."""
    for count in range(max(1, -(-len(clients) // size)), MAX_SHARDS + 1):
        if all(p is None or p < count for _, p in clients) and max(
                map(len, assign(clients, count).values()), default=0) <= size:
            return count
    return None


def check_shards(clients: Sequence[tuple[str, int | None]], shards: ClientShards) -> None:
    """Refuse a pin outside the shards or a shard over its size; the message names the fix."""
    for name, pinned in clients:
        if pinned is not None and pinned >= max(shards.count, 1):
            have = (f"shards 0..{shards.count - 1}" if shards.count
                    else "no shards: the clients live in the platform stack")
            raise ValueError(
                f"clients.{name}.shard: {pinned} is not a shard of this environment "
                f"(client_shards.count {shards.count}: {have})")
    for index, names in assign(clients, shards.count).items():
        if len(names) <= shards.size:
            continue
        fits = count_that_fits(clients, shards.size)
        where = (f"shard {index}" if shards.count else "the platform stack's state")
        fix = (f"set client_shards.count to {fits} or more" if fits is not None
               else "move pinned clients (clients.<c>.shard) or raise client_shards.size")
        raise ValueError(
            f"client_shards: {len(names)} clients in {where}, more than client_shards.size "
            f"{shards.size} (one state per shard stays small: docs/clients.md \"Shards\"); {fix}")


def shard_stack_name(platform_stack: str, index: int | str) -> str:
    """`<platform>-clients-<k>` (`index` "*": the pattern every shard of it matches)."""
    return f"{platform_stack}{SHARD_STACK_INFIX}{index}"


def group_pattern(platform_stack: str) -> str:
    """The stack pattern `cdktn deploy` takes for a platform stack and all its shards, matching
    at least the platform itself: the CLI refuses a pattern that matches no stack ("Could not
    find stack for pattern", cdktn-cli's getMultipleStacks, which matches names with
    minimatch), so `<platform>-clients-*` alone fails where there are no shards."""
    return f"{platform_stack}{{,{SHARD_STACK_INFIX}*}}"


def shard_state_prefix(state_prefix: str, index: int) -> str:
    return f"{state_prefix}/{SHARD_STATE_DIR}{index}"


def platform_of(stack: str) -> str:
    """The platform stack a stack belongs to (itself when it is not a shard)."""
    head, sep, tail = stack.rpartition(SHARD_STACK_INFIX)
    return head if sep and tail.isdigit() else stack
