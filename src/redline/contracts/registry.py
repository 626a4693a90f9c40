"""Things of one kind looked up by name: scenarios, sandbox backends, model kinds, experiment
backends, all registered the same way.

Why one pattern: a registry is built from an explicit list where its kind is defined, so it
is complete as soon as it exists (nothing has to have been imported first to fill it, and no
import registers anything as a side effect), a name given twice is an error at once instead
of one entry silently replacing another, and every unknown name gets the same message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no entry has; the message lists the names there are."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Entries of one `kind` by name, in the order given; duplicates rejected."""

    def __init__(self, kind: str, entries: Iterable[tuple[str, T]]) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            if not name:
                raise ValueError(f"a {kind} needs a name: {entry!r}")
            if name in self._entries:
                raise ValueError(f"two {kind}s are named {name!r}: {self._entries[name]!r} "
                                 f"and {entry!r}")
            self._entries[name] = entry

    @classmethod
    def of_classes(cls, kind: str, classes: Iterable[type[T]]) -> Registry[type[T]]:
        """Classes by the `name` each declares itself: one that only inherits its parent's
        name would take its parent's place, so that is an error too."""
        entries = []
        for c in classes:
            name = c.__dict__.get("name")
            if not isinstance(name, str):
                raise ValueError(f"{c.__qualname__} declares no `name` of its own (a {kind} "
                                 "must, or it would take its parent's)")
            entries.append((name, c))
        return Registry(kind, entries)

    def extended(self, entries: Iterable[tuple[str, T]]) -> Registry[T]:
        """A new registry with these entries too (a test's own scenario, say); the same
        rules, so a name already here is an error."""
        return Registry(self.kind, [*self._entries.items(), *entries])

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; choose from "
                              f"{', '.join(self._entries)}") from None

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())
