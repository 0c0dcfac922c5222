"""The one dependency guard of the BoneQCT modules: the core's Python packages that Slicer does
not bundle (``requirements.txt`` beside this file), checked before every module action and
installed with ``slicer.util.pip_install`` after the user agrees.

Every action of every module calls :func:`ensure_python_packages` before it touches ``boneqct``.
numpy, vtk and SimpleITK ship with Slicer (:data:`SLICER_BUNDLED`) and are never installed here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: The requirements resource: one pip requirement a line, "# import <name>" when it differs.
REQUIREMENTS_FILE = Path(__file__).with_name("requirements.txt")
#: Import names of the core's dependencies that Slicer itself ships.
SLICER_BUNDLED = ("numpy", "vtk", "SimpleITK")


def read_requirements(path: Path = REQUIREMENTS_FILE) -> dict[str, str]:
    """``{import name: pip requirement}`` from a requirements file (comments and blanks skipped)."""
    requirements = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement, _, comment = line.partition("#")
        requirement = requirement.strip()
        if not requirement:
            continue
        distribution = requirement.split("=")[0].split("<")[0].split(">")[0].strip()
        words = comment.split()
        import_name = words[1] if words[:1] == ["import"] and len(words) > 1 else distribution
        requirements[import_name] = requirement
    return requirements


def missing_python_packages(requirements: dict | None = None) -> list[str]:
    """Import names from ``requirements`` (default: the requirements file) not installed."""
    requirements = read_requirements() if requirements is None else requirements
    return [name for name in requirements if importlib.util.find_spec(name) is None]


def install_python_packages(import_names: list[str], requirements: dict | None = None) -> None:
    """Install the pip requirements providing ``import_names`` with ``slicer.util.pip_install``."""
    requirements = read_requirements() if requirements is None else requirements
    specs = " ".join(requirements[name] for name in import_names)
    if specs:
        import slicer.util

        slicer.util.pip_install(specs)


def _ask_to_install(missing: list[str]) -> bool:
    import slicer.util

    return slicer.util.confirmOkCancelDisplay(
        "BoneQCT needs these Python packages, which are not installed in Slicer yet: "
        + ", ".join(missing) + ". Install them now (needs an internet connection)?")


def ensure_python_packages(ask=_ask_to_install, requirements: dict | None = None) -> bool:
    """Make sure the core's Python packages are installed; True when they all are.

    Missing packages are listed to the user with ``ask(missing import names) -> bool`` (default:
    an OK/Cancel dialog) and installed when the answer is yes; False when the user declines.
    """
    requirements = read_requirements() if requirements is None else requirements
    missing = missing_python_packages(requirements)
    if not missing:
        return True
    if not ask(missing):
        return False
    install_python_packages(missing, requirements)
    return True
