"""Vertebral level names and the label numbering of common segmentation tools."""

from __future__ import annotations

import argparse
import re

from boneqct.errors import SpineError

#: Levels measured by spine QCT, cranial first (docs/domain.md section 3: L1-L2, up to L1-L4).
LEVEL_NAMES: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
#: Levels a vertebral fracture assessment grades, cranial first: T4-L5, the levels of
#: Genant's semi-quantitative method (Genant 1993, J Bone Miner Res 8:1137) and of VFA on DXA
#: (ISCD 2019 adult official positions); ``LEVEL_NAMES`` are its last levels, in its order.
VFA_LEVEL_NAMES: tuple[str, ...] = tuple(f"T{n}" for n in range(4, 11)) + LEVEL_NAMES

#: Label value -> level per label-map scheme, for every level of ``VFA_LEVEL_NAMES``.
#: TotalSegmentator (v2 "total" task: vertebrae_L5 27 up to vertebrae_T4 40) and VerSe
#: (vertebra number: 1-7 cervical, 8-19 thoracic, 20-24 lumbar).
VFA_LABEL_SCHEMES: dict[str, dict[int, str]] = {
    "totalsegmentator": {40 - n: name for n, name in enumerate(VFA_LEVEL_NAMES)},
    "verse": {11 + n: name for n, name in enumerate(VFA_LEVEL_NAMES)},
}


def label_schemes(levels: tuple[str, ...] = LEVEL_NAMES) -> dict[str, dict[int, str]]:
    """``VFA_LABEL_SCHEMES`` restricted to ``levels`` (label value -> level per scheme)."""
    return {scheme: {value: name for value, name in table.items() if name in levels}
            for scheme, table in VFA_LABEL_SCHEMES.items()}


#: Label value -> level per label-map scheme for the levels of spine QCT (``LEVEL_NAMES``).
LABEL_SCHEMES: dict[str, dict[int, str]] = label_schemes(LEVEL_NAMES)


def _scheme(scheme: str) -> dict[int, str]:
    """The label table of a scheme, or SpineError naming the known schemes."""
    table = LABEL_SCHEMES.get(scheme.lower())
    if table is None:
        raise SpineError(f"Unknown label scheme '{scheme}'. Use one of: "
                         f"{', '.join(sorted(LABEL_SCHEMES))}.")
    return table


def normalize_level(name: str, levels: tuple[str, ...] = LEVEL_NAMES) -> str:
    """The canonical level name ("l1" -> "L1"), or SpineError listing the known ``levels``."""
    level = str(name).strip().upper()
    if level not in levels:
        raise SpineError(f"Unknown vertebral level '{name}'. Use one of: {', '.join(levels)}.")
    return level


def parse_level_list(text: str) -> tuple[str, ...]:
    """Level names and ranges separated by commas or spaces, in any case ("l1, L2" ->
    ("L1", "L2"); "L1-L3" -> ("L1", "L2", "L3"); "T12-L2" -> ("T12", "L1", "L2")), each
    known, none twice; an argparse usage error otherwise (this is the type of --levels and
    --exclude)."""
    levels: list[str] = []
    try:
        for item in re.split(r"[,\s]+", text.strip()):
            if item:
                levels += _level_range(item)
    except SpineError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"'{text}' names a level twice")
    return tuple(levels)


def _level_range(item: str) -> list[str]:
    """One level ("l2") or a range of levels ("L1-L3", "T12-L2", either end first), cranial
    first."""
    first, dash, last = item.partition("-")
    if not dash:
        return [normalize_level(item)]
    ends = sorted(LEVEL_NAMES.index(normalize_level(name)) for name in (first, last))
    return list(LEVEL_NAMES[ends[0]:ends[1] + 1])


def level_for_label(label_value: int, scheme: str = "totalsegmentator") -> str:
    """The level name of a label value in a scheme; SpineError when the value is not a level."""
    table = _scheme(scheme)
    try:
        return table[int(label_value)]
    except KeyError:
        raise SpineError(f"Label {label_value} is not one of the levels {', '.join(LEVEL_NAMES)} "
                         f"in the '{scheme}' numbering. Check the label-map scheme.") from None


def label_for_level(level: str, scheme: str = "totalsegmentator") -> int:
    """The label value of a level in a scheme."""
    level = normalize_level(level)
    return next(value for value, name in _scheme(scheme).items() if name == level)
