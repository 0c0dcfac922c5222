"""Python packages the BoneQCT core needs beyond what Slicer bundles.

Slicer ships numpy, SimpleITK, vtk and pydicom; the rest is installed into Slicer's Python
with ``slicer.util.pip_install`` the first time a module needs it (after the user agrees).
numpy and vtk are never installed here: replacing Slicer's own copies would break it.
"""

from __future__ import annotations

import importlib.util

#: import name -> pip requirement(s) that provide it.
PYTHON_REQUIREMENTS = {
    "scipy": "scipy",
    "pydicom": "pydicom",
    "pylibjpeg": "pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg pylibjpeg-rle",
    "matplotlib": "matplotlib",
    "reportlab": "reportlab",
}


def missing_python_packages(requirements: dict | None = None) -> list[str]:
    """Import names from ``requirements`` (default :data:`PYTHON_REQUIREMENTS`) not installed."""
    requirements = PYTHON_REQUIREMENTS if requirements is None else requirements
    return [name for name in requirements if importlib.util.find_spec(name) is None]


def install_python_packages(import_names: list[str], requirements: dict | None = None) -> None:
    """Install the pip requirements providing ``import_names`` with ``slicer.util.pip_install``."""
    requirements = PYTHON_REQUIREMENTS if requirements is None else requirements
    specs = " ".join(requirements[name] for name in import_names)
    if specs:
        import slicer.util

        slicer.util.pip_install(specs)
