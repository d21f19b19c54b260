"""A compiled user's traits: one shared key layout plus the values.

A user's traits are None or a tuple ``(keys, value0, value1, ...)`` whose ``keys`` tuple is
shared by every user with the same trait names in the same order (``layout``): 8 bytes per
trait where the reference's flat ``(key, value, ...)`` tuple takes 16. Values up to
``SHARED_TRAIT_MAX`` characters are interned as in the reference. The order of the keys is
the reference's dict order (an update keeps a key's place, a new key goes last), so a user's
traits read back as the same dict.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

from actors.aggregates.kind import SHARED_TRAIT_MAX, shared

__all__ = ["TraitsView", "as_dict", "from_dict", "layout", "merge", "trait"]

_LAYOUTS: dict[tuple[str, ...], tuple[str, ...]] = {}


def layout(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The one shared tuple of these trait names (interned names)."""
    got = _LAYOUTS.get(keys)
    if got is None:
        got = _LAYOUTS[keys] = tuple(sys.intern(k) for k in keys)
    return got


def trait(t: tuple[Any, ...] | None, key: str) -> Any:
    """The trait ``key`` or None (a missing trait is null)."""
    if t is None:
        return None
    try:
        return t[t[0].index(key) + 1]
    except ValueError:
        return None


def as_dict(t: tuple[Any, ...] | None) -> dict[str, Any]:
    """The traits as a new dict, in their order."""
    return dict(zip(t[0], t[1:], strict=True)) if t else {}


def from_dict(traits: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The compact form of a traits dict (a snapshot's), values interned as when merged."""
    if not traits:
        return None
    return (layout(tuple(traits)), *(shared(v, SHARED_TRAIT_MAX) for v in traits.values()))


def merge(t: tuple[Any, ...] | None, data: Mapping[str, Any], masks: Mapping[str, int]) -> tuple[Any, int]:
    """The reference's ``_identify`` on the compact form: merge key by key, a None value
    removes the key. Returns the new traits and the mask of segments reading a changed key."""
    keys = list(t[0]) if t else []
    vals = list(t[1:]) if t else []
    dirty = 0
    changed = False
    intern, limit, str_ = sys.intern, SHARED_TRAIT_MAX, str
    for key, value in data.items():
        i = keys.index(key) if key in keys else -1
        if value is None:
            if i < 0:
                continue
            del keys[i]
            del vals[i]
        else:
            if i >= 0:
                old = vals[i]
                if old.__class__ is value.__class__ and old == value:
                    continue
            # shared(value, SHARED_TRAIT_MAX), inlined: per identify
            if type(value) is str_ and len(value) <= limit:
                value = intern(value)
            if i < 0:
                keys.append(key)
                vals.append(value)
            else:
                vals[i] = value
        changed = True
        dirty |= masks.get(key, 0)
    if not changed:
        return t, 0
    return ((layout(tuple(keys)), *vals) if keys else None), dirty


class TraitsView(Mapping[str, Any]):
    """Read-only mapping over one user's compact traits (for the reference's closures)."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t: tuple[Any, ...] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        t = self.t
        if t is None or key not in t[0]:
            return default
        return trait(t, key)

    def __getitem__(self, key: str) -> Any:
        t = self.t
        if t is None or key not in t[0]:
            raise KeyError(key)
        return trait(t, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.t[0] if self.t else ())

    def __len__(self) -> int:
        return len(self.t[0]) if self.t else 0
