"""Detection MRML adapter on Slicer's real MRML libraries (PyPI ``slicer-core``): the digital
phantom with sacrum and ribs, detected from its volume node, gives a point list named by
level at the true body centres, which the spine adapter reads back as seeds. Skipped as a
whole when slicer-core is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "QCTBoneDensity"))
sys.path.insert(0, str(REPO / "Testing"))

from QCTBoneDensityLib.detect import detect_levels_to_markups  # noqa: E402
from test_detect import NORMAL, _phantom  # noqa: E402

from boneqct.errors import DetectionError  # noqa: E402
from BoneQCTLib.vertebrae import seeds_from_markups_node  # noqa: E402
from BoneQCTLib.volumes import update_node_from_volume  # noqa: E402


@pytest.fixture
def scene():
    """A fresh MRML scene installed as ``slicer.mrmlScene``."""
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


def test_detected_points_are_named_levels_at_the_true_centres(scene):
    phantom = _phantom(NORMAL, sacrum=True, ribs=("T11", "T12"))
    ct_node = update_node_from_volume(phantom.volume, name="phantom")
    out = detect_levels_to_markups(ct_node)
    node = out["markups"]
    assert node.GetNumberOfControlPoints() == len(NORMAL)  # S1 is not a measured level
    seeds = seeds_from_markups_node(node)
    truth = {v["level"]: np.array(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"]}
    assert sorted(seeds) == sorted(NORMAL)
    for level, position in seeds.items():
        assert np.linalg.norm(position - truth[level]) < 3.0, level
    assert "counted from T12 (ribs)" in node.GetNthControlPointDescription(0)
    # run again into the same node: replaced, not appended
    detect_levels_to_markups(ct_node, node=node)
    assert node.GetNumberOfControlPoints() == len(NORMAL)


def test_a_volume_without_spine_is_refused(scene):
    phantom = _phantom(("L1", "L2"))
    array = np.full(phantom.volume.array_kji.shape, -1000, np.int16)
    array[:, 20:-20, 20:-20] = 40
    ct_node = update_node_from_volume(phantom.volume.with_array(array), name="water")
    with pytest.raises(DetectionError, match="not a CT|No spinal canal"):
        detect_levels_to_markups(ct_node)
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLMarkupsFiducialNode").GetNumberOfItems() == 0
