"""Lazy package attributes: a package names what it exports and imports each on first access.

Keeps light entry points (`m2l --help`, `m2l.errors`) free of torch while `m2l.load` still works.
A package defines its module-level `__getattr__` and `__dir__` with these two functions, so that
nothing runs when it is imported:

    def __getattr__(name: str) -> Any:
        return lazy_attribute(__name__, _LAZY, globals(), name)
"""

from __future__ import annotations

import importlib
from typing import Any


def lazy_attribute(package: str, table: dict[str, str], namespace: dict[str, Any], name: str) -> Any:
    """The exported `name` of `package`, imported from its module (and cached in `namespace`).

    Args:
        package: the package's `__name__` (for the AttributeError message).
        table: {exported name: module that defines it}.
        namespace: the package's `globals()`; a resolved name is cached there.
        name: the attribute asked for.

    Raises:
        AttributeError: `name` is not in `table`.
    """
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    namespace[name] = value
    return value


def lazy_names(table: dict[str, str], namespace: dict[str, Any]) -> list[str]:
    """What `dir(package)` lists: its own names and the lazy ones, sorted."""
    return sorted({*namespace, *table})
