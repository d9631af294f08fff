"""The command line is a client of the library: public API only, no import cycles."""

import ast
from pathlib import Path

import stochgrad.cli

CLI = Path(stochgrad.cli.__file__).parent


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from stochgrad... import name`` and ``import stochgrad...``,
    lazy imports inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stochgrad"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("stochgrad")]
    return found


def test_the_command_line_imports_only_public_names():
    for path in CLI.glob("*.py"):
        for module, name in _imports(path):
            if module.startswith("stochgrad.cli"):
                continue
            private = [part for part in [*module.split("."), name] if part.startswith("_")]
            assert not private, f"{path.name} imports {module}.{name}"


def test_no_import_cycle_between_command_line_modules():
    graph = {
        f"stochgrad.cli.{path.stem}" if path.stem != "__init__" else "stochgrad.cli": {
            module for module, _ in _imports(path) if module.startswith("stochgrad.cli.")
        }
        for path in CLI.glob("*.py")
    }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(
            child == target or (child not in seen and reaches(child, target, seen | {child}))
            for child in graph.get(start, ())
        )

    assert graph["stochgrad.cli.train"] and graph["stochgrad.cli.compare"]  # the test sees edges
    for module in graph:
        assert not reaches(module, module, {module}), f"{module} imports itself through a cycle"
