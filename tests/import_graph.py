"""Reading a module's imports from its source with `ast` (no import runs), for the import
contract tests (tests/test_layering.py, tests/tui/test_tui_layering.py)."""

from __future__ import annotations

import ast
from collections.abc import Iterator


def import_statements(source: str, module: str, *,
                      is_package: bool = False) -> Iterator[tuple[str, str | None]]:
    """`(absolute module, imported name or None)` for every import anywhere in `source`
    (the module `module`; `is_package` for an `__init__`), relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, base] if base else kept)
            yield from ((base, alias.name) for alias in node.names)
