"""Data files shipped in ``boneqct/data/<kind>/<name>.json``, or a user's own file of that kind.

Phantom certificates and reference populations are both addressed by a bundled name or by
the path of a JSON file in the same format.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from boneqct.io.user_json import read_user_text


def bundled_names(kind: str) -> list[str]:
    """Names of the bundled files of a kind (``phantoms``, ``reference``), without .json."""
    folder = resources.files("boneqct") / "data" / kind
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def read_named_json_text(kind: str, name_or_path: str | Path) -> str | None:
    """Text of a user's JSON file or of a bundled file by name; None when neither exists."""
    path = Path(name_or_path)
    if path.suffix.lower() == ".json" and path.exists():
        return read_user_text(path, f"give a {kind} JSON file or a bundled name "
                                    f"({', '.join(bundled_names(kind))}).")
    if str(name_or_path) in bundled_names(kind):
        return (resources.files("boneqct") / "data" / kind / f"{name_or_path}.json").read_text()
    return None
