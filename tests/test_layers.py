"""c4c's parts form layers: every import (inside functions too) points down or stays in its own part, and
no import closes a cycle, between modules or between parts.

The order, low to high (a part may import its own modules and any part of a lower layer):
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import c4c

PACKAGE = Path(c4c.__file__).resolve().parent

LAYERS: list[set[str]] = [
    {"__init__", "errors"},                                   # the version, the one error type
    {"jsonfile", "choices", "option_rules", "interrupt", "atomic", "lock", "outputs"},  # no model, no data
    {"video", "datasets", "metrics", "run"},                  # frames, annotations, scores, run formats
    {"data", "options"},    # data: datasets and files of vectors for the model; options: above the tables they offer
    {"model"},
    {"train", "search", "export", "plots", "evaluation"},  # evaluation: encode an evaluation set and score it
    {"synth", "serve", "stages"},
    {"cli"},
    {"demo", "mini", "reproduce"},                            # applications on top of the command line
]
__doc__ += "\n".join("    " + ", ".join(sorted(layer)) for layer in LAYERS)


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    path = PACKAGE.parent / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports() -> dict[str, set[str]]:
    """Every c4c module -> the c4c modules it imports anywhere in its file (functions included)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _module_of(path)
        found[module]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "c4c":
                names = [f"{node.module}.{a.name}" for a in node.names]
                targets = [n if _exists(n) else node.module for n in names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "c4c"]
            else:
                continue
            found[module].update(t for t in targets if t != module)
    return found


def part(module: str) -> str:
    """The top-level part of ``c4c.x.y``: ``x`` (``__init__`` for the package itself)."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def layer(name: str) -> int:
    for i, parts in enumerate(LAYERS):
        if name in parts:
            return i
    raise AssertionError(f"c4c/{name} is in no layer of tests/test_layers.py: add it where it belongs")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_import_points_down_or_stays_in_its_part():
    upward = []
    for module, targets in sorted(imports().items()):
        for target in sorted(targets):
            here, there = part(module), part(target)
            if here != there and layer(there) > layer(here):
                upward.append(f"{module} -> {target} ({here} is below {there})")
            elif here != there and layer(there) == layer(here) and layer(here) > 1:
                upward.append(f"{module} -> {target} ({here} and {there} are side by side: neither may import "
                              "the other)")
    assert upward == []


def test_no_cycle_between_modules():
    assert cycles(imports()) == []


def test_no_cycle_between_parts():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        graph[part(module)].update(part(t) for t in targets if part(t) != part(module))
    assert cycles(graph) == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer("run") < layer("model") < layer("train")
