"""The import rules of docs/architecture.md, read from the code's own imports (AST).

- ``extattn`` imports the standard library and torch only;
- ``explore/engine`` never imports Optuna (it trains and measures whatever it is handed);
- ``studies`` never imports torch, ``explore`` or ``extattn`` (browsing stays torch-free);
- nothing imports ``cli``;
- no two modules import each other at module level, directly or around a cycle.

Also: docs/record.md lists exactly the user-attr keys of :mod:`studies.record`.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from studies.record import STUDY_ATTRS, TRIAL_ATTRS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extattn", "explore", "studies")


def _modules() -> dict[str, Path]:
    out = {"cli": ROOT / "cli.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """Absolute names a file imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:  # `if TYPE_CHECKING:` blocks never run
        nodes = [n for n in nodes if not (isinstance(n, ast.If)
                                          and "TYPE_CHECKING" in ast.unparse(n.test))]
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def _violations(prefix: str, forbidden: set[str], allowed_third_party: set[str] | None = None
                ) -> list[str]:
    bad = []
    for module, path in MODULES.items():
        if module != prefix and not module.startswith(prefix + "."):
            continue
        for name in _imports(path):
            top = _top(name)
            if top in forbidden:
                bad.append(f"{module} imports {name}")
            elif (allowed_third_party is not None and top not in sys.stdlib_module_names
                  and top not in allowed_third_party and top != _top(prefix)):
                bad.append(f"{module} imports {name}")
    return sorted(set(bad))


def test_extattn_imports_only_torch() -> None:
    assert _violations("extattn", {"optuna", "typer", "rich", "explore", "studies", "cli"},
                       allowed_third_party={"torch"}) == []


def test_the_engine_never_imports_optuna() -> None:
    assert _violations("explore.engine", {"optuna", "cli"}) == []


def test_studies_never_imports_torch_or_explore() -> None:
    assert _violations("studies", {"torch", "torchvision", "explore", "extattn", "cli"}) == []


def test_nothing_imports_the_cli() -> None:
    importers = [m for m, path in MODULES.items() if m != "cli" and "cli" in
                 {_top(n) for n in _imports(path)}]
    assert importers == []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = set()
        for name in _imports(path, module_level_only=True):
            # `from explore.engine import allocator` names a module; `from x import y` a name.
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_cycles() -> None:
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_rules_catch_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A studies module importing torch is reported (the check can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    import torch\n")
    monkeypatch.setitem(MODULES, "studies.bad", bad)
    assert _violations("studies", {"torch"}) == ["studies.bad imports torch"]


def _documented_keys(section: str) -> list[str]:
    text = (ROOT / "docs" / "record.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_0-9]+)` \|", body, flags=re.M)


def test_docs_record_lists_every_key_of_the_record() -> None:
    assert _documented_keys("Study user attrs") == list(STUDY_ATTRS)
    assert _documented_keys("Trial user attrs") == list(TRIAL_ATTRS)
    types = re.findall(r"^\| `[a-z_0-9]+` \| (\w+) \|", (ROOT / "docs" / "record.md").read_text(),
                       flags=re.M)
    assert len(types) == len(STUDY_ATTRS) + len(TRIAL_ATTRS)
    assert set(types) <= {"str", "int", "float", "bool", "dict", "list"}, set(types)


def test_the_version_is_written_once_in_pyproject() -> None:
    """pyproject.toml holds the version; the package and `explore --version` read it."""
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    import extattn

    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert extattn.__version__ == declared
    explore = Path(sys.executable).with_name("explore")
    shown = subprocess.run([str(explore), "--version"], capture_output=True, text=True,
                           timeout=60).stdout.strip()
    assert shown == f"explore {declared}"
    for path in (root / "cli.py", root / "extattn" / "__init__.py"):
        assert f'"{declared}"' not in path.read_text(), path  # not hard-coded again


def _picture_rooms() -> dict[str, set[str]]:
    """The rooms of docs/architecture.md's picture and the module names listed in each."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    picture = text.split("## The rooms and the one-way arrows", 1)[1].split("```")[1]
    rooms: dict[str, set[str]] = {}
    room = ""
    for line in picture.splitlines():
        head = re.match(r"^(\s*)([a-z]+/)\s", line)
        if head:
            room = ("explore/" if head.group(1) else "") + head.group(2)
            line = line[head.end():]
        elif not line.startswith(" " * 8):
            room = ""
            continue
        if room:
            words = re.sub(r"\([^)]*\)?", " ", line)  # "(torch, no optuna)", "(the trial ...)"
            rooms.setdefault(room, set()).update(re.findall(r"[a-z_]+", words))
    return rooms


def test_the_architecture_picture_lists_every_module_in_its_room() -> None:
    """docs/architecture.md's picture names each module of studies/ and of explore's three rooms
    where the code has it, and no module that is not there."""
    rooms = _picture_rooms()
    for room in ("studies/", "explore/engine/", "explore/search/", "explore/run/"):
        code = {p.stem for p in (ROOT / room).glob("*.py") if p.stem != "__init__"}
        assert code <= rooms[room], (room, sorted(code - rooms[room]))
        assert not (rooms[room] - code), (room, sorted(rooms[room] - code))
