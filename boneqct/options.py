"""Options of a measurement, declared once.

Each measurement's ``Options`` dataclass (``boneqct.<measurement>.options``) is the single
source of every setting's default, unit, range, choices and help text. The command line builds
its arguments from it (``add_options``), Slicer's parameter node takes its defaults from it, and
the core checks an instance made in code (``check_options``) the same way argparse checks the
command line. A field is declared with :func:`option`::

    @dataclass(frozen=True)
    class SpineOptions:
        margin_mm: float = option(2.0, "margin from the cortex", unit="mm", low=0.0, high=10.0)

        def __post_init__(self):
            check_options(self)
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, Field, asdict, field, fields
from typing import Any, Callable

from boneqct.errors import OptionsError


def option(default: Any, help: str, *, unit: str = "", low: float | None = None,
           high: float | None = None, integer: bool = False, choices: tuple | None = None,
           parse: Callable[[str], Any] | None = None, flag: str | None = None,
           metavar: str | None = None) -> Field:
    """A dataclass field carrying its command-line and checking metadata.

    Args:
        default: the default value (tuples for lists).
        help: one line for ``--help`` and the Slicer tooltip, without the default.
        unit: unit shown after numbers ("mm", "mg/cm3").
        low, high: inclusive range of a number.
        integer: the number is an int.
        choices: the allowed values of a text option.
        parse: for other kinds, text -> value; raises ``argparse.ArgumentTypeError``.
        flag: the command-line flag when it is not ``--`` + the name with dashes.
        metavar: the placeholder in ``--help``.
    """
    metadata = {"help": help, "unit": unit, "low": low, "high": high, "integer": integer,
                "choices": choices, "parse": parse, "flag": flag, "metavar": metavar}
    return field(default=default, metadata=metadata)


def number_in(low: float, high: float, unit: str = "", integer: bool = False):
    """An argparse type: a finite number within [low, high] (an int when ``integer``), else
    argparse's usage error (exit 2) naming the range."""
    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not ((integer or math.isfinite(value)) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}-{high:g}{unit}")
        return value
    return parse


def flag_of(f: Field) -> str:
    """The command-line flag of an options field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def dest_of(f: Field) -> str:
    """The argparse attribute of an options field (its flag with underscores)."""
    return flag_of(f)[2:].replace("-", "_")


def _is_number(f: Field) -> bool:
    return f.metadata.get("low") is not None or f.metadata.get("high") is not None


def add_options(parser: argparse.ArgumentParser, options_class, skip: tuple[str, ...] = ()) -> None:
    """Add one argument per field of ``options_class`` (except ``skip``) to ``parser``."""
    for f in fields(options_class):
        if f.name in skip or "help" not in f.metadata:
            continue
        meta, unit = f.metadata, f.metadata.get("unit", "")
        default = f.default if f.default is not MISSING else None
        kwargs: dict[str, Any] = {"dest": dest_of(f), "default": default, "metavar": meta.get(
            "metavar") or flag_of(f)[2:].upper().replace("-", "_")}
        shown = ",".join(default) if isinstance(default, tuple) else default
        if meta.get("choices"):
            kwargs.update(choices=meta["choices"], metavar=None)
            text = f"{meta['help']} (default {shown})"
        elif _is_number(f):
            low = -math.inf if meta["low"] is None else meta["low"]
            high = math.inf if meta["high"] is None else meta["high"]
            suffix = f" {unit}" if unit else ""
            kwargs["type"] = number_in(low, high, suffix, meta.get("integer", False))
            text = f"{meta['help']} ({low:g}-{high:g}{suffix}, default {shown:g})"
        else:
            kwargs["type"] = meta.get("parse") or str
            text = meta["help"] if shown in (None, "", ()) else f"{meta['help']} (default {shown})"
        parser.add_argument(flag_of(f), help=text.replace("%", "%%"), **{
            k: v for k, v in kwargs.items() if v is not None or k == "default"})


def options_from_args(options_class, args, **overrides):
    """An ``options_class`` instance from parsed arguments (fields absent from ``args`` keep
    their defaults; ``overrides`` win)."""
    values = {f.name: getattr(args, dest_of(f)) for f in fields(options_class)
              if hasattr(args, dest_of(f))}
    return options_class(**{**values, **overrides})


def check_options(options) -> None:
    """Check every number field against its range and every text field against its choices,
    as argparse does for the command line; OptionsError naming the field otherwise."""
    for f in fields(options):
        value, meta = getattr(options, f.name), f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise OptionsError(f"{f.name} = {value!r} is not one of "
                               f"{', '.join(map(str, meta['choices']))}.")
        if _is_number(f):
            low = -math.inf if meta["low"] is None else meta["low"]
            high = math.inf if meta["high"] is None else meta["high"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not low <= value <= high:
                raise OptionsError(f"{f.name} = {value!r} is outside {low:g}-{high:g} "
                                   f"{meta.get('unit', '')}".rstrip() + ".")


def options_to_dict(options) -> dict:
    """Plain JSON-serialisable values of an options instance (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()}


def options_from_dict(options_class, document: dict):
    """Inverse of :func:`options_to_dict`; unknown keys refused, lists back to tuples."""
    names = {f.name: f for f in fields(options_class)}
    unknown = sorted(set(document) - set(names))
    if unknown:
        raise OptionsError(f"Unknown options: {', '.join(unknown)}.")
    return options_class(**{k: tuple(v) if isinstance(names[k].default, tuple) else v
                            for k, v in document.items()})
