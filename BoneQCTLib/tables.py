"""Result tables in the scene: one column-spec table writer, and the result document on the table.

Every BoneQCT result table is written by :func:`write_table` from a list of :class:`Column`
specs, the way Slicer's SegmentStatistics exports its measurements: each column has a name,
a unit label and a description (``SetColumnUnitLabel`` / ``SetColumnDescription``). The
columns of every table are declared once, as data, in ``Resources/columns.json`` (one line per
column: name, the row key it shows, type, unit, description) and read by :func:`columns`.

The whole result (``Result.to_dict()``, the JSON document the CLI writes) is stored on its table
node as the attribute ``BoneQCT.<Kind>.JSON`` (:func:`store_document`), so it is saved with the
scene and read back after the scene is reloaded (:func:`read_document`).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import slicer
import vtk


class Column(NamedTuple):
    """One column of a result table.

    ``value`` is a key of the row (rows are dicts) or a function of the row; ``array_class``
    is ``vtk.vtkStringArray``, ``vtk.vtkDoubleArray`` or ``vtk.vtkIntArray``. A missing value
    (None) is written as "" (text), NaN (number) or -1 (integer).
    """

    name: str
    value: str | Callable[[Any], Any]
    array_class: type
    unit: str
    description: str


#: The column catalogue of all result tables.
COLUMNS_FILE = Path(__file__).parent / "Resources" / "columns.json"
#: Column types of the catalogue -> vtk array classes.
ARRAY_CLASSES = {"text": vtk.vtkStringArray, "number": vtk.vtkDoubleArray, "count": vtk.vtkIntArray}


@functools.cache
def _catalogue() -> dict:
    return json.loads(COLUMNS_FILE.read_text(encoding="utf-8"))


def columns(table: str, computed: dict | None = None, **units) -> tuple[Column, ...]:
    """The columns of ``table`` declared in ``Resources/columns.json``.

    A column whose value is ``"=name"`` shows ``computed[name](row)``; the others show the
    row's key (a dict row) or attribute (an object row). A unit written ``"{name}"`` in the
    catalogue is filled from ``units`` (e.g. the material of a measured value).
    """
    computed = computed or {}
    return tuple(
        Column(spec["name"],
               computed[spec["value"][1:]] if spec["value"].startswith("=") else spec["value"],
               ARRAY_CLASSES[spec["type"]], spec["unit"].format(**units), spec["description"])
        for spec in _catalogue()[table])


def _cell(column: Column, row):
    if callable(column.value):
        value = column.value(row)
    else:
        value = row.get(column.value) if isinstance(row, dict) else getattr(row, column.value)
    if column.array_class is vtk.vtkStringArray:
        return "" if value is None else str(value)
    if column.array_class is vtk.vtkIntArray:
        return -1 if value is None else int(value)
    return math.nan if value is None else float(value)


def add_column(table_node, name: str, array_class, values, unit: str, description: str) -> None:
    """Append a column of ``values`` (an ``array_class`` vtk array) with its unit and description."""
    column = array_class()
    column.SetName(name)
    for value in values:
        column.InsertNextValue(value)
    table_node.AddColumn(column)
    table_node.SetColumnUnitLabel(name, unit)
    table_node.SetColumnDescription(name, description)


def yes_no(value, missing: str = "") -> str:
    """A yes/no cell of a flag; ``missing`` when the flag is None (not assessed)."""
    return missing if value is None else "yes" if value else "no"


def qc_text(qc: dict) -> str:
    """A quality-check cell: "pass", or "FAIL (the failed checks)"; "" without checks."""
    if not qc:
        return ""
    if qc.get("passed"):
        return "pass"
    failed = [key for key, ok in qc.items() if key != "passed" and isinstance(ok, bool) and not ok]
    return "FAIL" + (f" ({', '.join(failed)})" if failed else "")


def table_node_or_new(table_node, name: str):
    """``table_node``, or a new ``vtkMRMLTableNode`` named ``name`` in ``slicer.mrmlScene``."""
    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    return table_node


def write_table(table_node, columns, rows) -> None:
    """Replace the columns of ``table_node`` by ``columns`` (:class:`Column`) over ``rows``."""
    rows = list(rows)
    was_modifying = table_node.StartModify()
    table_node.RemoveAllColumns()
    for column in columns:
        add_column(table_node, column.name, column.array_class, [_cell(column, row) for row in rows],
                   column.unit, column.description)
    table_node.EndModify(was_modifying)


def json_default(value):
    """``json.dumps`` default making numpy values of core results JSON-serialisable."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def document_attribute(kind: str) -> str:
    """Name of the table-node attribute holding the document of a result ``kind`` ("Spine")."""
    return f"BoneQCT.{kind}.JSON"


def store_document(table_node, kind: str, document: dict) -> None:
    """Store a result's JSON document on its table node (attribute ``BoneQCT.<kind>.JSON``)."""
    table_node.SetAttribute(document_attribute(kind), json.dumps(document, default=json_default))


#: Attribute names under which scenes saved by earlier versions hold a document, by kind.
LEGACY_DOCUMENT_ATTRIBUTES = {"FE": "BoneQCT.FEJSON", "Calibration": "BoneQCT.CalibrationJSON"}


def _document_text(table_node, kind: str) -> str | None:
    if table_node is None:
        return None
    for attribute in (document_attribute(kind), LEGACY_DOCUMENT_ATTRIBUTES.get(kind)):
        text = table_node.GetAttribute(attribute) if attribute else None
        if text:
            return text
    return None


def has_document(table_node, kind: str) -> bool:
    """Whether ``table_node`` holds a document of ``kind`` (also under its attribute name of
    scenes saved before, :data:`LEGACY_DOCUMENT_ATTRIBUTES`)."""
    return _document_text(table_node, kind) is not None


def read_document(table_node, kind: str) -> dict | None:
    """The document of ``kind`` stored on ``table_node`` (None when it holds none)."""
    text = _document_text(table_node, kind)
    return None if text is None else json.loads(text)


def store_exam(table_node, metadata: dict) -> None:
    """Store the exam metadata a report shows (``Volume.metadata`` keys: series description,
    patient's age and sex ...) on a result table (attribute ``BoneQCT.Exam.JSON``), so that the
    report written after the scene is reloaded shows the same exam."""
    store_document(table_node, "Exam", metadata)


def store_exam_of(table_node, volume, ct_node, age_years=None, sex=None) -> None:
    """Store the exam of ``volume`` (its DICOM header's metadata, when it came from DICOM) with
    the series named by ``ct_node`` when the header names none, and the patient's age and sex
    the analysis used where given (else the header's stay) (:func:`store_exam`)."""
    header = volume.metadata
    store_exam(table_node, {**header,
                            "series_description": header.get("series_description")
                            or ct_node.GetName(),
                            "patient_age_years": header.get("patient_age_years")
                            if age_years is None else age_years,
                            "patient_sex": header.get("patient_sex") if sex is None else sex})


def read_exam(table_node) -> dict:
    """The exam metadata stored on ``table_node`` by :func:`store_exam` (empty when none)."""
    return read_document(table_node, "Exam") or {}


def referenced_volume(table_node, role: str):
    """The volume node ``table_node`` references as ``role`` (``SetNodeReferenceID``, saved with
    the scene) when it holds an image, else None (no table, no reference, node deleted, empty)."""
    node = table_node.GetNodeReference(role) if table_node is not None else None
    return node if node is not None and node.GetImageData() is not None else None
