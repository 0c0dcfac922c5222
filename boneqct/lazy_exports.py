"""Package names imported on first use (PEP 562), so that importing one light submodule of a
package (``boneqct.io.atomic``, ``boneqct.qa.options``: what the command line's parsers need)
does not import its heavy ones (pydicom, matplotlib, reportlab): ``boneqct --help`` took 4 s.
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """The module ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``: each name of
    ``exports`` (submodule, or a module's full ``boneqct.`` name -> names it defines) is
    imported from its module when first asked for."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = where[name]
        value = getattr(importlib.import_module(
            module if module.startswith("boneqct.") else f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__, sorted(where)
