"""JSON files the user hands in (calibration, markups, reference, phantom certificate, result
documents for ``compare``): read strictly, checked field by field, refused with a message that
names the file, the field and what to do.

Strict means: a regular file of sane size, UTF-8, standard JSON (no NaN or Infinity, which
Python's reader would otherwise accept), nesting a person could have written, an object at
the top.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from boneqct.errors import UserFileError

#: Largest user JSON read (bytes): the biggest legitimate file, a calibration with per-slice
#: lines for a 2000-slice scan, is well under 1 MB.
MAX_USER_JSON_BYTES = 20 * 1024 * 1024
#: Deepest nesting accepted; the formats read here nest at most five levels.
MAX_JSON_DEPTH = 32


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _depth(value, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping past ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_user_json(text: str, what: str, remedy: str) -> dict:
    """Parse ``text`` strictly as a JSON object (see the module docstring); ``what`` names the
    file in messages, ``remedy`` says what to give instead."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise UserFileError(f"{what} is nested too deeply to be a valid file; {remedy}") from None
    except ValueError as exc:
        raise UserFileError(f"{what} is not valid JSON ({str(exc)[:120]}); {remedy}") from None
    if not isinstance(document, dict):
        raise UserFileError(f"{what} holds a JSON {type(document).__name__}, not an object; "
                            f"{remedy}")
    if _depth(document, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise UserFileError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; {remedy}")
    return document


def read_user_text(path: str | Path, remedy: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_USER_JSON_BYTES; UserFileError naming
    the file and ``remedy`` (what to give instead) otherwise."""
    path = Path(path)
    what = f"'{path.name}'"
    try:
        size_bytes = path.stat().st_size
        if not path.is_file():
            raise UserFileError(f"{what} is not a regular file; {remedy}")
        if size_bytes > MAX_USER_JSON_BYTES:
            raise UserFileError(f"{what} is {size_bytes / 2**20:.0f} MB, too large for this kind "
                                f"of file (at most {MAX_USER_JSON_BYTES // 2**20} MB); {remedy}")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserFileError(f"{what} does not exist; {remedy}") from None
    except UnicodeDecodeError:
        raise UserFileError(f"{what} is not UTF-8 text; {remedy}") from None
    except OSError as exc:
        raise UserFileError(f"Cannot read {what} ({exc.strerror}); {remedy}") from None


def read_user_json(path: str | Path, remedy: str) -> dict:
    """Read the JSON object in ``path`` strictly; UserFileError (exit 2) naming the file and
    ``remedy`` (what to give instead) when it cannot be."""
    return parse_user_json(read_user_text(path, remedy), f"'{Path(path).name}'", remedy)


def finite_number(value, name: str, what: str, low: float = -math.inf,
                  high: float = math.inf) -> float:
    """``value`` as a float when it is a finite JSON number within [low, high]; else
    UserFileError naming the field ``name`` of ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        bounds = "" if (low, high) == (-math.inf, math.inf) else f" within {low:g}-{high:g}"
        raise UserFileError(f"{what}: '{name}' must be a finite number{bounds}; it is "
                            f"{str(value)[:40]!r}.")
    return float(value)


def typed_field(document: dict, name: str, kinds: type | tuple, what: str, required: bool = True):
    """``document[name]`` when it has one of the JSON types ``kinds`` (None allowed when not
    ``required``); else UserFileError naming the field."""
    value = document.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,)):
        expected = "/".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise UserFileError(f"{what}: '{name}' must be {expected}; it is "
                            f"{'missing' if name not in document else type(value).__name__}.")
    return value
