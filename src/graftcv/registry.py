"""Named registries for the extension points, in the style of timm's `register_model` / `list_models`."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

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


class lazy:  # noqa: N801  (used like a function: `build=lazy("module:attribute")`)
    """A callable named "module:attribute", imported on its first call.

    Registrations name their implementations this way so that listing a registry (the CLI's help, config
    validation) imports neither torch nor scikit-learn: only using an item does."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self._target: Any = None

    @property
    def target(self) -> Any:
        if self._target is None:
            module, _, attribute = self.reference.partition(":")
            self._target = getattr(importlib.import_module(module), attribute)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy({self.reference!r})"
