"""Lazy package attributes: a package names what it exports and imports each on first access.

Keeps light entry points (`m2l --help`, `m2l.errors`) free of torch while `m2l.load` and
`from m2l.cli import main` still work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, table: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level `__getattr__` and `__dir__` for `package`.

    Args:
        package: the package's `__name__` (for the AttributeError message).
        table: {exported name: module that defines it}.
        namespace: the package's `globals()`; a resolved name is cached there.

    Returns:
        (`__getattr__`, `__dir__`) to assign in the package's `__init__`.
    """

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *table})

    return getattr_, dir_
