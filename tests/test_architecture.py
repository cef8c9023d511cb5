"""The layering of docs/architecture.md, checked on the source: arrows point down, SQL stays in the data layer.

Every module under verifier/ is parsed with `ast` (nothing is imported), so a violation is named
by file and line. Imports are collected wherever they are: module level, inside functions, under
`if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "verifier"

SERVICES = ("issue", "lookup", "audit", "accounts", "backup", "anomalies", "auditlog", "sequencer")
SQL_METHODS = ("execute", "executemany", "executescript", "query")


@dataclass(frozen=True)
class Import:
    target: str  # a dotted name: "verifier.codes", "flask", "werkzeug.security"
    line: int


def module_name(path: Path) -> str:
    parts = ("verifier", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text("utf-8"), filename=str(path))


def relative_path(name: str) -> str:
    return str(modules()[name].relative_to(PACKAGE.parent))


@functools.cache
def imports(name: str) -> tuple[Import, ...]:
    """What `name` imports; `from X import y` is X.y when that is a module of the package, else X."""
    is_package = modules()[name].name == "__init__.py"
    found = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append(Import(submodule if submodule in modules() else source, node.lineno))
    return tuple(found)


def internal_imports(name: str) -> dict[str, int]:
    """The package's modules that `name` imports, with the first line that does."""
    edges: dict[str, int] = {}
    for imp in imports(name):
        if imp.target in modules() and imp.target != name and imp.target != "verifier":
            edges.setdefault(imp.target, imp.line)
    return edges


def is_under(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a, b, ..., a) through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)

    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for component in components:
        for start in sorted(component):  # the shortest cycle through each member (breadth first)
            cycle = shortest_cycle(graph, component, start)
            key = tuple(sorted(cycle[:-1]))
            if key not in seen:
                seen.add(key)
                cycles.append(cycle)
    return sorted(cycles)


def shortest_cycle(graph: dict[str, dict[str, int]], component: set[str], start: str) -> list[str]:
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ == start:
                    return paths[node] + [start]
                if succ in component and succ not in paths:
                    paths[succ] = paths[node] + [succ]
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])]
    return "; ".join(steps)


# --- the checker's own tests: it sees what it must see ----------------------------------------


def test_the_checker_finds_every_module_and_resolves_relative_imports():
    names = modules()
    assert {"verifier", "verifier.codes", "verifier.cli", "verifier.web"} <= set(names)
    assert "verifier.codes" in internal_imports("verifier.keys")  # from .codes import ...
    assert "verifier.files" in internal_imports("verifier.keys")  # from . import files


def test_the_cycle_finder_names_a_cycle_and_ignores_a_tree():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    two = {"a": {"b": 1, "c": 1}, "b": {"a": 2}, "c": {"a": 3}}
    assert find_cycles(two) == [["a", "b", "a"], ["c", "a", "c"]]
    assert describe_cycle(["a", "b", "c", "a"], graph) == "a (line 1) -> b; b (line 2) -> c; c (line 3) -> a"
    assert find_cycles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 2}}) == []


# --- the rules ----------------------------------------------------------------------------------


def test_no_import_cycle_in_the_package():
    graph = {name: internal_imports(name) for name in modules()}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + " | ".join(describe_cycle(c, graph) for c in cycles)


def is_data_layer(name: str) -> bool:
    return is_under(name, "verifier.db") or is_under(name, "verifier.repos")


def test_sql_only_in_the_data_layer():
    """`.execute(`, `.executemany(`, `.executescript(`, `.query(` only in verifier/db/ and verifier/repos/."""
    found: dict[str, list[int]] = {}
    for name in modules():
        if is_data_layer(name):
            continue
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS:
                found.setdefault(relative_path(name), []).append(node.lineno)
    listing = "; ".join(
        f"{path}: {len(lines)} (lines {', '.join(map(str, sorted(lines)))})" for path, lines in found.items()
    )
    total = sum(map(len, found.values()))
    assert not found, f"{total} SQL calls outside verifier/db/ and verifier/repos/: {listing}"


def test_the_cli_never_imports_the_web_package():
    found = sorted(
        {
            f"{relative_path(name)}:{imp.line} imports {imp.target}"
            for name in modules()
            if is_under(name, "verifier.cli")
            for imp in imports(name)
            if is_under(imp.target, "verifier.web")
        }
    )
    assert not found, found


def test_nothing_imports_the_cli_but_the_entry_point():
    found = [
        f"{relative_path(name)}:{line}"
        for name in modules()
        if name not in ("verifier.__main__", "verifier.cli")
        for target, line in internal_imports(name).items()
        if is_under(target, "verifier.cli")
    ]
    assert not found, found


def test_services_never_import_flask_or_the_web_package():
    found = sorted(
        {
            f"{relative_path(name)}:{imp.line} imports {imp.target}"
            for name in (f"verifier.{service}" for service in SERVICES)
            if name in modules()
            for imp in imports(name)
            if is_under(imp.target, "flask") or is_under(imp.target, "verifier.web")
        }
    )
    assert not found, found


def test_repositories_never_import_services_or_adapters():
    upper = [f"verifier.{service}" for service in SERVICES] + ["verifier.cli", "verifier.web", "verifier.serve"]
    found = [
        f"{relative_path(name)}:{line} imports {target}"
        for name in modules()
        if is_data_layer(name)
        for target, line in internal_imports(name).items()
        if any(is_under(target, layer) for layer in upper)
    ]
    assert not found, found


def environment_reads(name: str) -> list[str]:
    """Where `name` touches the process environment: os.environ, os.environb, os.getenv, from os import environ."""
    found = []
    for node in ast.walk(tree(name)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "environb", "getenv", "getenvb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append(f"{relative_path(name)}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ("environ", "environb", "getenv", "getenvb"):
                    found.append(f"{relative_path(name)}:{node.lineno} from os import {alias.name}")
    return sorted(found, key=lambda where: int(where.split(":")[1].split()[0]))


def test_services_never_read_the_environment():
    found = [
        read
        for service in SERVICES
        if f"verifier.{service}" in modules()
        for read in environment_reads(f"verifier.{service}")
    ]
    assert not found, found


def test_only_settings_reads_the_environment():
    found = [read for name in modules() if name != "verifier.settings" for read in environment_reads(name)]
    assert not found, f"{len(found)} reads of the environment outside verifier/settings.py: " + ", ".join(found)
