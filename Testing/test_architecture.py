"""Structure the code promises: no import cycle inside ``boneqct`` (function-level imports
included, as a cycle hidden inside a function still ties two modules together), every
third-party import is a declared dependency, and every project note the code cites is in the
repository (issue 12)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "boneqct"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, at any depth of the file."""
    names = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {i for i in _imports(path) if i in modules and i != name}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_core():
    """Package ``__init__`` files that re-export their modules are left out: importing
    ``boneqct.spine.roi`` runs ``boneqct/spine/__init__``, but that is Python's package
    machinery, not a dependency of one module on another."""
    graph = {name: {m for m in deps if not _is_package(m)}
             for name, deps in _graph().items() if not _is_package(name)}
    assert _cycles(graph) == []


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


#: Import names of distributions whose import name differs from the distribution's.
IMPORT_NAMES = {"SimpleITK": "SimpleITK", "pydicom": "pydicom", "pylibjpeg": "pylibjpeg",
                "reportlab": "reportlab", "pyamg": "pyamg", "vtk": "vtk", "numpy": "numpy",
                "scipy": "scipy", "matplotlib": "matplotlib"}


def _declared(list_name: str) -> set[str]:
    """Distribution names of a dependency list of pyproject.toml (``dependencies``, ``batch``)."""
    listed = re.search(rf"^{list_name} = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(),
                       re.S | re.M).group(1)
    return {re.split(r"[=<>\[ ]", d)[0] for d in re.findall(r'"([^"]+)"', listed)}


def _third_party_imports(paths) -> set[str]:
    imported = {name.split(".")[0] for path in paths for name in _imports(path)}
    return {name for name in imported if name and name != "boneqct"
            and name not in sys.stdlib_module_names}


def test_every_third_party_import_of_the_core_is_a_dependency():
    """The core imports only its dependencies; the cohort batch (boneqct.batch and its command)
    also the [batch] extra's, which nothing else imports."""
    batch_files = [*(PACKAGE / "batch").rglob("*.py"), PACKAGE / "cli" / "batch.py"]
    others = [p for p in PACKAGE.rglob("*.py") if p not in batch_files]
    assert _third_party_imports(others) - _declared("dependencies") == set()
    assert _third_party_imports(batch_files) - _declared("dependencies") - _declared("batch") \
        == set()
    assert not _third_party_imports(others) & (_declared("batch") - _declared("dependencies"))


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in
                                        [*PACKAGE.rglob("*.py"), ROOT / "README.md"]))
def test_cited_project_notes_are_in_the_repository(path):
    for cited in re.findall(r"docs/[\w./-]+\.md", (ROOT / path).read_text()):
        assert (ROOT / cited).is_file(), f"{path} cites {cited}"


def test_slicer_dependency_guard_lists_every_third_party_import_of_the_core():
    """BoneQCTLib/requirements.txt (what Slicer installs on first use) plus the packages Slicer
    ships cover every third-party import of ``boneqct``, and each is a pyproject dependency."""
    sys.path.insert(0, str(ROOT))
    from BoneQCTLib.dependencies import SLICER_BUNDLED, read_requirements

    requirements = read_requirements()
    # boneqct.batch (cohorts on Dask) runs from the command line or a notebook, and
    # boneqct.cli (its terminal progress display: tqdm) and boneqct.dicom (the --dicom outputs:
    # highdicom, which needs a newer pydicom than Slicer may ship) from the command line, never
    # in Slicer
    third_party = _third_party_imports(
        path for path in PACKAGE.rglob("*.py")
        if not {PACKAGE / "batch", PACKAGE / "cli", PACKAGE / "dicom"} & set(path.parents))
    assert "pyamg" in third_party
    assert third_party - set(requirements) - set(SLICER_BUNDLED) == set()
    distributions = {re.split(r"[=<>\[ ]", r)[0] for r in requirements.values()}
    assert distributions | set(SLICER_BUNDLED) <= _declared("dependencies")
