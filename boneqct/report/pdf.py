"""Shared report furniture: styles, the exam/patient table, figures, atomic PDF writing."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from matplotlib.figure import Figure
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from boneqct import __version__
from boneqct.io.atomic import atomic_path
from boneqct.io.dicom import anonymized_metadata

STYLES = getSampleStyleSheet()
TABLE_STYLE = TableStyle([
    ("FONTSIZE", (0, 0), (-1, -1), 8),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde4ee")),
    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
])
ALERT_COLOR = colors.HexColor("#b00020")


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """A matplotlib figure and its axes, made without pyplot: no global figure state and no
    backend switch (the core also runs inside Slicer's Python); ``kwargs`` as for
    ``Figure.subplots`` plus ``figsize`` (inches)."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def figure_flowable(fig, width_mm: float) -> Image:
    """A matplotlib figure as a PNG image flowable of the given width (mm)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=200, bbox_inches="tight")
    buffer.seek(0)
    image = Image(buffer)
    scale = width_mm * mm / image.drawWidth
    image.drawWidth *= scale
    image.drawHeight *= scale
    return image


#: Text style of a table cell too long for its column (wrapped; the table's 8 pt font).
CELL_STYLE = ParagraphStyle("cell", parent=STYLES["Normal"], fontSize=8, leading=9.5)
#: Left plus right padding of a table cell (points; reportlab's default 6 each).
CELL_PADDING_PT = 12.0


def table(rows: list[list], col_widths_mm: list[float] | None = None, style=None) -> Table:
    """A small report table; the first row is the header. With column widths, text too long
    for its column wraps inside the cell instead of running over the next one."""
    widths = None if col_widths_mm is None else [w * mm for w in col_widths_mm]
    if widths is not None:
        rows = [[Paragraph(cell, CELL_STYLE) if isinstance(cell, str) and stringWidth(
                    cell, CELL_STYLE.fontName, 8) > width - CELL_PADDING_PT else cell
                 for cell, width in zip(row, widths, strict=False)] for row in rows]
    t = Table(rows, colWidths=widths, hAlign="LEFT")
    t.setStyle(style or TABLE_STYLE)
    return t


#: Units as printed (superscripts of the report fonts' Latin-1 set).
_PRINTED_UNITS = (("mg/cm3", "mg/cm\u00b3"), ("g/cm2", "g/cm\u00b2"), ("mm3", "mm\u00b3"),
                  ("cm3", "cm\u00b3"), ("cm2", "cm\u00b2"), ("mm2", "mm\u00b2"))


def units(text: str) -> str:
    """``text`` with its units typeset: mg/cm3 -> mg/cm\u00b3, g/cm2 -> g/cm\u00b2 ..."""
    for plain, printed in _PRINTED_UNITS:
        text = text.replace(plain, printed)
    return text


def person_name(dicom_name) -> str:
    """A DICOM person name (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``) as people write it:
    "FAMILY, GIVEN MIDDLE"."""
    parts = [part.strip() for part in str(dicom_name).split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def exam_table(metadata: dict, anonymize: bool) -> Table:
    """Patient and exam table; identity left out when ``anonymize``."""
    shown = anonymized_metadata(metadata) if anonymize else metadata

    def value(key, unit=""):
        v = shown.get(key)
        if v is None:
            return "-"
        if isinstance(v, (list, tuple)):
            return " \u00d7 ".join(_number(x) for x in v) + unit
        return _number(v) + unit

    name = shown.get("patient_name")
    patient = ("anonymised" if anonymize else
               f"{person_name(name) if name else '-'} (ID {value('patient_id')})")
    rows = [
        ["Patient", patient, "Sex / age", f"{value('patient_sex')} / {value('patient_age_years', ' y')}"],
        ["Study date", value("study_date"), "Scanner",
         f"{value('manufacturer')} {value('model')}".strip()],
        ["Tube", f"{value('kvp', ' kV')} / {value('exposure_mas', ' mAs')}", "Kernel",
         value("convolution_kernel")],
        ["Slice thickness", value("slice_thickness_mm", " mm")
         + (" (given)" if shown.get("slice_thickness_given") else ""), "Pixel spacing",
         value("pixel_spacing_mm", " mm")],
    ]
    style = TableStyle([("FONTSIZE", (0, 0), (-1, -1), 8),
                        ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold"),
                        ("FONTNAME", (2, 0), (2, -1), "Helvetica-Bold"),
                        ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)])
    return table(rows, [28, 62, 28, 62], style)


#: Notes under a table or figure: legends, sources, caveats.
NOTE_STYLE = ParagraphStyle("note", parent=STYLES["Italic"], fontSize=7.5, leading=9)
HEADLINE_STYLE = ParagraphStyle("headline", parent=STYLES["Normal"], fontSize=15, leading=19,
                                fontName="Helvetica-Bold")
HEADLINE_NOTE_STYLE = ParagraphStyle("headline-note", parent=STYLES["Normal"], fontSize=8.5,
                                     leading=10.5)
#: Frame colours of a headline by how its verdict reads.
VERDICT_COLORS = {"normal": colors.HexColor("#2e7d32"), "low": colors.HexColor("#b26a00"),
                  "alert": ALERT_COLOR, "none": colors.HexColor("#555555")}


def headline(result_html: str, note_html: str = "", verdict: str = "none") -> list:
    """The report's main result first and largest, in a frame coloured by ``verdict`` (a key of
    :data:`VERDICT_COLORS`), with a one-line ``note`` under it (basis, reference)."""
    rows = [[Paragraph(units(result_html), HEADLINE_STYLE)]]
    if note_html:
        rows.append([Paragraph(units(note_html), HEADLINE_NOTE_STYLE)])
    box = Table(rows, colWidths=[180 * mm], hAlign="LEFT")
    box.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.6, VERDICT_COLORS[verdict]),
                             ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                             ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
                             ("LEFTPADDING", (0, 0), (-1, -1), 5)]))
    return [Spacer(1, 1.5 * mm), box, Spacer(1, 2 * mm)]


def scale_bar(ax, length_mm: float = 10.0, color: str = "#ffd60a") -> None:
    """A scale bar of ``length_mm`` in the lower right of an image axis drawn in mm."""
    x0, x1 = ax.get_xlim()
    y_low, y_high = sorted(ax.get_ylim())
    height = y_high - y_low
    # the image's bottom is the axis's high end when the y axis is inverted (row 0 at the top)
    up = -1.0 if ax.yaxis_inverted() else 1.0
    bottom = (y_high if up < 0 else y_low) + up * 0.07 * height
    right = max(x0, x1) - 0.06 * abs(x1 - x0)
    ax.plot([right - length_mm, right], [bottom, bottom], color=color, lw=1.6,
            solid_capstyle="butt")
    ax.text(right - length_mm / 2, bottom + up * 0.03 * height, f"{length_mm:g} mm", color=color,
            fontsize=5.5, ha="center", va="bottom")


def radiological_axial(volume):
    """How an axial slice (array j, i) of ``volume`` is shown as Slicer shows it: the
    patient's right on the image's left, anterior at the top (row 0). Returns the function
    that turns a slice (or a mask of it) into that display and the displayed pixel size (row,
    column) in mm. Raises ValueError when the slices are not axial."""
    d, spacing = volume.direction_ras, volume.spacing_mm
    if abs(d[2, 2]) < 0.9:
        raise ValueError("The slices are not axial.")
    along_i = abs(d[0, 0]) >= abs(d[0, 1])  # the i axis (array columns) runs along RAS x
    x_step, y_step = (d[0, 0], d[1, 1]) if along_i else (d[0, 1], d[1, 0])

    def display(slice_ji: np.ndarray) -> np.ndarray:
        image = slice_ji if along_i else slice_ji.T
        # columns from the patient's right (RAS +x) to the left; rows from anterior down
        return image[::1 if y_step < 0 else -1, ::1 if x_step < 0 else -1]

    return display, ((spacing[1], spacing[0]) if along_i else (spacing[0], spacing[1]))


#: Orientation letters of an axial view as Slicer shows it (top, left, right, bottom).
AXIAL_LETTERS = ("A", "R", "L", "P")
_LETTER_STYLE = ParagraphStyle("orientation", parent=STYLES["Normal"], fontSize=8, leading=9,
                               fontName="Helvetica-Bold", alignment=1)


def oriented_figure(fig, width_mm: float, letters: tuple[str, str, str, str] = AXIAL_LETTERS
                    ) -> Table:
    """A view's figure (drawn without margins) with its orientation letters (top, left, right,
    bottom) as text at its edges, so they read as the viewer's labels do and stay text."""
    top, left, right, bottom = (Paragraph(letter, _LETTER_STYLE) for letter in letters)
    grid = Table([["", top, ""], [left, figure_flowable(fig, width_mm), right],
                  ["", bottom, ""]], colWidths=[5 * mm, width_mm * mm, 5 * mm], hAlign="LEFT")
    grid.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                              ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                              *((f"{side}PADDING", (0, 0), (-1, -1), 0) for side in
                                ("TOP", "BOTTOM", "LEFT", "RIGHT"))]))
    return grid


WARNING_STYLE = ParagraphStyle("warning", parent=STYLES["Normal"], fontSize=8, leading=9.5,
                               textColor=ALERT_COLOR)


def warnings_box(warnings: list[str]) -> list:
    """The result's warnings as a framed box, to stand right under the exam table so they are
    read before any number; nothing when there are none."""
    if not warnings:
        return []
    rows = [[Paragraph(f"<b>Read first: {len(warnings)} warning{'s' * (len(warnings) > 1)}</b>",
                       WARNING_STYLE)]]
    rows += [[Paragraph(f"- {escape(w)}", WARNING_STYLE)] for w in warnings]
    box = Table(rows, colWidths=[180 * mm], hAlign="LEFT")
    box.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 0.8, ALERT_COLOR),
                             ("TOPPADDING", (0, 0), (-1, -1), 0.8),
                             ("BOTTOMPADDING", (0, 0), (-1, -1), 0.8)]))
    return [Spacer(1, 1.5 * mm), box, Spacer(1, 1.5 * mm)]


def write_report(path: str | Path, title: str, flowables: list) -> Path:
    """Write a PDF report atomically: title, generation note, then the given flowables."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    story = [
        Paragraph(title, STYLES["Title"]),
        Paragraph(f"BoneQCT {__version__} - generated {stamp} - for research use; results must "
                  "be reviewed by a qualified reader.", STYLES["Italic"]),
        Spacer(1, 3 * mm),
        *flowables,
    ]
    with atomic_path(path) as tmp:
        doc = SimpleDocTemplate(str(tmp), pagesize=A4, leftMargin=14 * mm, rightMargin=14 * mm,
                                topMargin=12 * mm, bottomMargin=12 * mm, title=title,
                                author="BoneQCT")
        doc.build(story)
    return path
