"""Draw the extension and module icons (128x128 PNG) with matplotlib.

Run from the repository root: ``python Resources/make_icons.py``. The icons are simple
glyphs: a vertebral body with calibration rods (extension and QCTBoneDensity), a proximal
femur (HipCTXA) and a hexahedral mesh (FiniteElement).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import patches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BONE = "#e9dcc0"
CORTEX = "#8a6d3b"
ROD_COLOURS = ("#f4f4f4", "#d0d0d0", "#a0a0a0", "#707070", "#404040")


def _canvas():
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 128)
    ax.set_ylim(0, 128)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, transparent=True)
    plt.close(fig)


def draw_vertebra_with_rods(path: Path) -> None:
    """Axial vertebra above a row of calibration rods."""
    fig, ax = _canvas()
    ax.add_patch(patches.Ellipse((64, 80), 70, 52, facecolor=BONE, edgecolor=CORTEX, lw=4))
    ax.add_patch(patches.Ellipse((64, 80), 34, 22, facecolor="#c9a66b", edgecolor="none"))
    ax.add_patch(patches.FancyBboxPatch((10, 10), 108, 26, boxstyle="round,pad=2",
                                        facecolor="#5b7fa6", edgecolor="none"))
    for n, colour in enumerate(ROD_COLOURS):
        ax.add_patch(patches.Circle((22 + 21 * n, 23), 8, facecolor=colour, edgecolor="k", lw=1))
    _save(fig, path)


def draw_femur(path: Path) -> None:
    """Proximal femur outline with a neck box."""
    fig, ax = _canvas()
    shaft = patches.Polygon([(70, 6), (96, 6), (92, 70), (74, 70)], closed=True,
                            facecolor=BONE, edgecolor=CORTEX, lw=3)
    neck = patches.Polygon([(76, 66), (92, 72), (52, 104), (40, 92)], closed=True,
                           facecolor=BONE, edgecolor=CORTEX, lw=3)
    ax.add_patch(shaft)
    ax.add_patch(neck)
    ax.add_patch(patches.Circle((38, 104), 20, facecolor=BONE, edgecolor=CORTEX, lw=3))
    ax.add_patch(patches.Ellipse((96, 76), 22, 30, facecolor=BONE, edgecolor=CORTEX, lw=3))
    ax.add_patch(patches.Rectangle((52, 80), 24, 12, angle=-40, fill=False, edgecolor="#d62728", lw=3))
    _save(fig, path)


def draw_mesh(path: Path) -> None:
    """A block of hexahedral elements coloured by a stress-like gradient."""
    fig, ax = _canvas()
    cmap = plt.get_cmap("viridis")
    size, x0, y0 = 20, 14, 14
    for i in range(5):
        for j in range(5):
            ax.add_patch(patches.Rectangle((x0 + i * size, y0 + j * size), size, size,
                                           facecolor=cmap((i + j) / 8), edgecolor="white", lw=1.5))
    ax.annotate("", xy=(64, 120), xytext=(64, 126), arrowprops={"arrowstyle": "-|>", "color": "k"})
    _save(fig, path)


def main() -> None:
    draw_vertebra_with_rods(ROOT / "Resources" / "Icons" / "BoneQCT.png")
    draw_vertebra_with_rods(ROOT / "QCTBoneDensity" / "Resources" / "Icons" / "QCTBoneDensity.png")
    draw_femur(ROOT / "HipCTXA" / "Resources" / "Icons" / "HipCTXA.png")
    draw_mesh(ROOT / "FiniteElement" / "Resources" / "Icons" / "FiniteElement.png")


if __name__ == "__main__":
    main()
