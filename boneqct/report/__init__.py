"""PDF reports (reportlab) with figures drawn by matplotlib.

``pdf.py`` holds the page furniture shared by every report (header, exam table, styles,
atomic writing); each measurement adds its own section module.
"""

from boneqct.report.calibration_section import calibration_section
from boneqct.report.pdf import exam_table, write_report

__all__ = ["calibration_section", "exam_table", "write_report"]
