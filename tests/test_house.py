"""The house's rules, read from the source: module sizes, import direction, no cycles, a lean layer.

Imports are read with `ast` (every `import` statement, at any depth, except those under
`if TYPE_CHECKING:`), so a rule holds for the code as written, not only for what one run imports.
"""

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from support import REPO_ROOT

MAX_MODULE_LINES = 400
LAYER = REPO_ROOT / "layers" / "shared"
PIPELINES = ("stream_processor", "aggregator", "orders", "optin_updater", "redrive")
# Each handler directory and the one pipeline package it may import.
HANDLER_PIPELINES = {
    "stream_processor": "stream_processor",
    "aggregator": "aggregator",
    "csv_loader": "orders",
    "firehose_transform": "orders",
    "optin_updater": "optin_updater",
    "redrive": "redrive",
}
# Lowest first. A module may import its own rank or lower, never higher.
DEVELOPMENT_RANKS = (
    ("tributary_shared", 0),
    ("tributary.runtime", 2),
    ("tributary.console", 3),
    ("tributary.demos", 4),
    ("tributary.commands", 5),
    ("tributary.cli", 5),
)
# The rest of `tributary` (producer, consumer, the embedded AWS and its guard) sits between the layer and the runtime.
OTHER_DEVELOPMENT_RANK = 1
# Lambda's Python runtime provides these; everything else must come from the layer's requirements.
LAMBDA_RUNTIME_DISTRIBUTIONS = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def lines(self) -> int:
        return len(self.path.read_text().splitlines())

    def imports(self) -> set[str]:
        return set(imported_names(ast.parse(self.path.read_text()), self.name))


def imported_names(tree: ast.AST, module: str) -> Iterator[str]:
    package = module.rsplit(".", 1)[0]
    for node in walk_outside_type_checking(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def walk_outside_type_checking(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            yield from (inner for branch in node.orelse for inner in [branch, *ast.walk(branch)])
            continue
        yield node
        yield from walk_outside_type_checking(node)


def package_modules(root: Path, package: str) -> list[Module]:
    modules = []
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules.append(Module(name, path))
    return modules


LAYER_MODULES = package_modules(LAYER, "tributary_shared")
DEVELOPMENT_MODULES = package_modules(REPO_ROOT, "tributary")
HANDLERS = [Module(f"functions.{name}.app", REPO_ROOT / "functions" / name / "app.py") for name in HANDLER_PIPELINES]
FIRST_PARTY = {module.name: module for module in [*LAYER_MODULES, *DEVELOPMENT_MODULES]}


def first_party_imports(module: Module) -> set[str]:
    """The first-party modules `module` imports (a `from package import name` counts the module `name` if it is one)."""
    return {name for name in module.imports() if name in FIRST_PARTY and name != module.name}


def pipeline_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tributary_shared" and parts[1] in PIPELINES else None


def distribution_key(name: str) -> str:
    """A distribution's name as PyPI compares them (PEP 503): `aws_lambda_powertools` is `aws-lambda-powertools`."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def rank(name: str) -> int:
    for prefix, value in DEVELOPMENT_RANKS:
        if name == prefix or name.startswith(prefix + "."):
            return value
    return OTHER_DEVELOPMENT_RANK


@pytest.mark.parametrize("module", [*LAYER_MODULES, *DEVELOPMENT_MODULES, *HANDLERS], ids=lambda m: m.name)
def test_no_module_is_over_400_lines(module):
    assert module.lines <= MAX_MODULE_LINES, f"{module.path.relative_to(REPO_ROOT)} has {module.lines} lines"


def test_the_toolkit_imports_no_pipeline_and_a_pipeline_no_other_pipeline():
    crossings = []
    for module in LAYER_MODULES:
        own = pipeline_of(module.name)
        for imported in first_party_imports(module):
            if not imported.startswith("tributary_shared"):
                crossings.append(f"{module.name} imports the development package's {imported}")
            elif pipeline_of(imported) not in (None, own):
                crossings.append(f"{module.name} imports {imported}")
    assert not crossings


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda m: m.name)
def test_a_handler_imports_its_own_pipeline_and_the_toolkit_only(handler):
    own = HANDLER_PIPELINES[handler.name.split(".")[1]]
    imported = {name for name in handler.imports() if name.split(".")[0] in {"tributary_shared", "tributary"}}
    assert imported, "a handler runs the layer's code"
    assert all(name.startswith("tributary_shared") for name in imported), imported
    assert {pipeline_of(name) for name in imported} <= {None, own}, imported


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = [
        f"{module.name} → {imported}"
        for module in DEVELOPMENT_MODULES
        for imported in first_party_imports(module)
        if rank(imported) > rank(module.name)
    ]
    assert not upward


def test_there_are_no_import_cycles():
    graph = {name: first_party_imports(module) for name, module in FIRST_PARTY.items()}
    # A package imports its own submodules to present them: that edge is a face, not a dependency.
    for name, imports in graph.items():
        graph[name] = {target for target in imports if not target.startswith(name + ".")}
    assert not find_cycle(graph)


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as a path that returns to its start, or [] if there is none (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in graph:
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(target) == 1:
                return [*path[path.index(target):], target]
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append(iter(sorted(graph.get(target, ()))))
    return []


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_layer_imports_only_what_lambda_and_its_requirements_provide():
    """Producer-only code (registration, compatibility checks, encoding libraries) stays out of the layer."""
    lines = (LAYER / "requirements.txt").read_text().splitlines()
    required = {line.split("==")[0] for line in lines if line.strip() and not line.startswith("#")}
    allowed = {distribution_key(name) for name in required | LAMBDA_RUNTIME_DISTRIBUTIONS}
    distributions = packages_distributions()
    foreign = set()
    for module in [*LAYER_MODULES, *HANDLERS]:
        for name in module.imports():
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in {"tributary_shared", "functions"}:
                continue
            owners = {distribution_key(owner) for owner in distributions.get(top, [top])}
            if not owners & allowed:
                foreign.add(f"{module.name} imports {top} ({', '.join(sorted(owners))})")
    assert not foreign
