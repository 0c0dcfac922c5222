"""The command line as users type it, made unambiguous for argparse before parsing.

- A coordinate with a negative first number after an option that takes a value
  (``--seed -78.9,12,30``, ``--l3 -4.7,12,30``) reads to argparse as an unknown option; it is
  joined to its option (``--seed=-78.9,12,30``), which argparse reads as the option's value.
- Level names after ``--levels`` / ``--exclude`` separated by spaces (``--levels L1 L2``) would
  be taken for input paths; they are joined into one value (``--levels=L1,L2``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

#: A value starting with a minus and a number ("-78.9,12,30", "-.5"): never an option name.
NEGATIVE_VALUE = re.compile(r"^-\.?\d")
#: Level names and ranges as typed after --levels ("L1", "l2,", "T12-L2", "L1,L2").
_LEVEL = r"[TtLl]\d{1,2}(-[TtLl]\d{1,2})?"
LEVEL_WORD = re.compile(rf"^{_LEVEL}(,{_LEVEL})*,?$")


def normalize_argv(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with negative values joined to their options and spaced level lists joined
    (see the module docstring); arguments after ``--`` are left as they are."""
    command = _subcommand(parser, argv)
    if command is None:
        return list(argv)
    takes_value = {s for a in command._actions if a.option_strings and a.nargs is None
                   for s in a.option_strings}
    takes_levels = {s for a in command._actions if a.option_strings
                    and getattr(a.type, "__name__", "") == "parse_level_list"
                    for s in a.option_strings}
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            out += [token, *tokens]
            break
        name = token.partition("=")[0]
        if out and out[-1] in takes_value and "=" not in out[-1] and NEGATIVE_VALUE.match(token):
            out[-1] = f"{out[-1]}={token}"
        elif out and out[-1].partition("=")[0] in takes_levels and LEVEL_WORD.match(token) \
                and not Path(token).exists():
            out[-1] = _join_levels(out[-1], token)
        elif name in takes_levels and "=" not in token:
            out.append(f"{token}=")  # completed by the level words that follow
        else:
            out.append(token)
    return [t[:-1] if t.endswith("=") and t[:-1] in takes_levels else t for t in out]


def _subcommand(parser: argparse.ArgumentParser, argv: list[str]):
    """The subcommand parser named in ``argv`` (its first word that is not an option)."""
    subparsers = next((a for a in parser._actions
                       if isinstance(a, argparse._SubParsersAction)), None)
    name = next((t for t in argv if not t.startswith("-")), None)
    return None if subparsers is None else subparsers.choices.get(name)


def _join_levels(token: str, word: str) -> str:
    """``--levels=L1`` and ``L2`` -> ``--levels=L1,L2``."""
    value = token.partition("=")[2].rstrip(",")
    return f"{token.partition('=')[0]}={value + ',' if value else ''}{word.rstrip(',')}"
