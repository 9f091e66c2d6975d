"""Named registries for the extension points, in the style of timm's `register_model` / `list_models`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, Protocol, TypeVar

from graftcv.errors import GraftcvError


class Named(Protocol):
    name: str
    help: str


T = TypeVar("T", bound=Named)


class Registry(Mapping[str, T], Generic[T]):
    """Items by name, in registration order; `lookup` explains an unknown name in one sentence.

    A registry is a read-only mapping for its readers (CLI choices, config validation, compare's lists,
    serve's allowed methods): one `register` call is all a new strategy, head, CAM method, optimizer,
    schedule or head operation needs."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, item: T, replace: bool = False) -> T:
        if item.name in self._items and not replace:
            raise ValueError(f"A {self.kind} named {item.name!r} is already registered.")
        self._items[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def lookup(self, name: str) -> T:
        if name not in self._items:
            raise GraftcvError(f"Unknown {self.kind} {name!r}: choose one of {', '.join(self._items)}.")
        return self._items[name]

    def names(self, where=None) -> list[str]:
        """Registered names, optionally only those whose item satisfies `where(item)`."""
        return [name for name, item in self._items.items() if where is None or where(item)]

    def choices_help(self, where=None) -> str:
        return " | ".join(self.names(where))

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
