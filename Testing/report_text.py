"""Reading a report PDF back in tests: its text, and where its one-letter text runs (the
orientation letters of a view) stand on the page."""

from __future__ import annotations

import pypdf


def text_and_letter_positions(path):
    """The report's text, {letter: [(x, y) page positions, points, y up]} of each one-letter
    text run, and the number of pages."""
    reader = pypdf.PdfReader(path)
    letters: dict[str, list] = {}

    def visit(text, cm, tm, font, size):
        if len(text.strip()) == 1:  # the text matrix's origin through the graphics matrix
            letters.setdefault(text.strip(), []).append(
                (tm[4] * cm[0] + tm[5] * cm[2] + cm[4], tm[4] * cm[1] + tm[5] * cm[3] + cm[5]))

    text = "".join(page.extract_text(visitor_text=visit) for page in reader.pages)
    return text, letters, len(reader.pages)
