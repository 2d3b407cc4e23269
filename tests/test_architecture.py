"""The layout ARCHITECTURE.md promises, checked from the code's own imports: drivers and
SQL only under backends/, no import cycles (imports inside functions count), no module
taking another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "bulkops"
DRIVERS = ("sqlalchemy", "psycopg", "boto3", "botocore", "sqlite3", "pgpq", "adbc_driver_manager")
# bench/ holds the naive contenders of `bulkops bench`: the hand-written SQL an
# application would run, by design.
EXEMPT = ("bench",)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in EXEMPT:
            continue
        name = ".".join(("bulkops", *parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(module imported, names taken)`` for every import the file runs, at any depth
    (inside functions too); ``if TYPE_CHECKING:`` blocks are left out: they never run."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
    return found


def test_drivers_are_imported_only_by_backends() -> None:
    """Framework adapters (integrations/) may name their framework (SQLAlchemy's ORM,
    Django), never a driver."""
    offenders = [
        f"{name} imports {target}"
        for name, path in modules().items()
        if not name.startswith("bulkops.backends")
        for target, _ in imports(name, path)
        if target.split(".")[0] in DRIVERS
        and not (name == "bulkops.integrations.sqlalchemy_orm" and target.startswith("sqlalchemy"))
    ]
    assert offenders == []


def test_no_import_cycles_between_modules() -> None:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for target, names in imports(name, path):
            # "from . import errors" names a module; "from .x import y" the module x.
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in mods and candidate != name:
                    edges.add(candidate)
                    break
        graph[name] = edges

    def parents(module: str) -> set[str]:  # importing a.b.c runs a/__init__ and a/b/__init__
        parts = module.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts))} & set(mods)

    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ re-exporting its own modules is not a cycle of concern.
    real = [c for c in cycles if not any(p in c.split(" -> ") for p in parents(c.split()[0]))]
    assert real == []


def test_no_module_takes_another_modules_private_names() -> None:
    offenders = [
        f"{name} takes {n} from {target}"
        for name, path in modules().items()
        for target, names in imports(name, path)
        if target.startswith("bulkops")
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert offenders == []


@pytest.mark.parametrize("module", ["writes", "reads", "primitives", "sync.engine", "transaction"])
def test_the_verbs_do_not_import_the_store(module: str) -> None:
    name = f"bulkops.{module}"
    targets = {t for t, _ in imports(name, modules()[name])}
    assert "bulkops.store" not in targets
