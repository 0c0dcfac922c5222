"""MRML adapter tests on Slicer's real MRML libraries (PyPI ``slicer-core``).

Skipped as a whole when slicer-core is not installed. The shared adapters live in
``BoneQCTLib`` (the repository root is put on ``sys.path`` by conftest.py, as Slicer's
scripted-modules folder is).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

from boneqct.volume import Volume  # noqa: E402
from BoneQCTLib.calibration import (  # noqa: E402
    calibration_from_table_node,
    calibration_to_table_node,
    has_calibration,
)
from BoneQCTLib.dependencies import missing_python_packages  # noqa: E402
from BoneQCTLib.volumes import update_node_from_volume, volume_from_node  # noqa: E402


@pytest.fixture
def scene():
    """A fresh MRML scene installed as ``slicer.mrmlScene``."""
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


def oblique_ijk_to_ras() -> np.ndarray:
    """IJK->RAS with a rotation about an oblique axis, anisotropic spacing and an origin."""
    axis = np.array([1.0, 2.0, 3.0]) / np.linalg.norm([1.0, 2.0, 3.0])
    angle = np.deg2rad(23.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    m = np.eye(4)
    m[:3, :3] = rotation * np.array([0.7, 0.9, 2.5])
    m[:3, 3] = [-120.25, 35.5, -410.0]
    return m


def asymmetric_volume() -> Volume:
    """Shape (k, j, i) = (4, 5, 6) with every voxel value distinct."""
    array_kji = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) * 7 - 300
    return Volume(array_kji=array_kji, ijk_to_ras=oblique_ijk_to_ras())


def node_ijk_to_ras(node) -> np.ndarray:
    matrix = slicer.util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def test_volume_into_node_keeps_geometry_and_voxels(scene):
    volume = asymmetric_volume()
    node = update_node_from_volume(volume, name="ct")
    assert node.IsA("vtkMRMLScalarVolumeNode")
    assert node.GetName() == "ct"
    assert scene.GetNodeByID(node.GetID()) is node
    np.testing.assert_allclose(node_ijk_to_ras(node), volume.ijk_to_ras, atol=1e-9, rtol=0)
    assert node.GetImageData().GetDimensions() == (6, 5, 4)  # i, j, k
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), volume.array_kji)
    # voxel (i, j, k) = (5, 1, 2) sits where the core says it does
    node_ijk_to_ras_point = node_ijk_to_ras(node) @ np.array([5, 1, 2, 1.0])
    ras = volume.ijk_to_ras_points([[5, 1, 2]])[0]
    np.testing.assert_allclose(node_ijk_to_ras_point[:3], ras, atol=1e-9)


def test_volume_round_trip_through_node_is_unchanged(scene):
    volume = asymmetric_volume()
    back = volume_from_node(update_node_from_volume(volume))
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(back.array_kji, volume.array_kji)
    assert back.array_kji.dtype == volume.array_kji.dtype
    assert back.metadata == {}


def test_volume_from_node_copies_voxels(scene):
    node = update_node_from_volume(asymmetric_volume())
    volume = volume_from_node(node)
    slicer.util.arrayFromVolume(node)[0, 0, 0] = 12345
    assert volume.array_kji[0, 0, 0] != 12345


def test_update_existing_node_replaces_grid(scene):
    node = update_node_from_volume(asymmetric_volume(), name="keep me")
    smaller = Volume(array_kji=np.full((2, 3, 4), 1.5, dtype=np.float32), ijk_to_ras=np.diag([2.0, 3.0, 4.0, 1.0]))
    same = update_node_from_volume(smaller, node=node, name="ignored")
    assert same is node and node.GetName() == "keep me"
    np.testing.assert_allclose(node_ijk_to_ras(node), smaller.ijk_to_ras, atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), smaller.array_kji)


def test_volume_from_empty_node_says_what_to_do(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(ValueError, match="image data"):
        volume_from_node(node)


def _spine_phantom_volume():
    try:
        from boneqct.phantoms import make_spine_phantom
    except ImportError as exc:
        pytest.skip(f"boneqct.phantoms.make_spine_phantom is not available yet ({exc})")
    result = make_spine_phantom()
    if isinstance(result, Volume):
        return result
    for item in (getattr(result, "volume", None), *(result if isinstance(result, tuple) else ())):
        if isinstance(item, Volume):
            return item
    pytest.fail(f"make_spine_phantom() returned {type(result).__name__}, which holds no Volume")


def test_spine_phantom_into_node_keeps_size_and_geometry(scene):
    phantom = _spine_phantom_volume()
    node = update_node_from_volume(phantom, name="phantom")
    assert node.GetImageData().GetDimensions() == phantom.size_ijk
    np.testing.assert_allclose(node_ijk_to_ras(node), phantom.ijk_to_ras, atol=1e-9, rtol=0)
    np.testing.assert_allclose(node.GetSpacing(), phantom.spacing_mm, atol=1e-9)
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array_kji, phantom.array_kji)


def _manual_calibration():
    try:
        from boneqct.calibration import manual_calibration
    except ImportError as exc:
        pytest.skip(f"boneqct.calibration.manual_calibration is not available yet ({exc})")
    return manual_calibration(slope_hu_per_mg_cm3=1.27, intercept_hu=-4.5, material="HA")


def test_calibration_table_columns_have_units_and_descriptions(scene):
    calibration = _manual_calibration()
    table = calibration_to_table_node(calibration)
    assert table.IsA("vtkMRMLTableNode")
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert names == ["Rod", "Density (mg/cm3)", "Measured (HU)", "SD (HU)", "Voxels",
                     "Residual (HU)", "Residual (mg/cm3)"]
    assert table.GetColumnUnitLabel("Density (mg/cm3)") == "mg/cm3"
    assert table.GetColumnUnitLabel("Residual (mg/cm3)") == "mg/cm3"
    assert table.GetColumnUnitLabel("Voxels") == "voxels"
    for name in ("Measured (HU)", "SD (HU)", "Residual (HU)"):
        assert table.GetColumnUnitLabel(name) == "HU"
    for name in names:
        assert table.GetColumnDescription(name), f"column {name} has no description"
    assert table.GetNumberOfRows() == len(calibration.rods)
    assert table.GetAttribute("BoneQCT.Material") == "HA"
    assert float(table.GetAttribute("BoneQCT.SlopeHUPerMgCm3")) == pytest.approx(1.27)
    assert float(table.GetAttribute("BoneQCT.InterceptHU")) == pytest.approx(-4.5)


def test_calibration_rebuilt_from_table_converts_like_the_original(scene):
    calibration = _manual_calibration()
    table = calibration_to_table_node(calibration)
    assert has_calibration(table)
    rebuilt = calibration_from_table_node(table)
    hu = np.array([-100.0, 0.0, 250.0, 1000.0])
    np.testing.assert_allclose(rebuilt.hu_to_bmd(hu), calibration.hu_to_bmd(hu), rtol=1e-12)
    assert rebuilt.to_dict() == calibration.to_dict()


def test_calibration_of_a_scene_saved_before_the_rename_is_read(scene):
    """Scenes saved before issue 12 hold the calibration as ``BoneQCT.CalibrationJSON``."""
    calibration = _manual_calibration()
    table = calibration_to_table_node(calibration)
    document = table.GetAttribute("BoneQCT.Calibration.JSON")
    table.RemoveAttribute("BoneQCT.Calibration.JSON")
    assert not has_calibration(table)
    table.SetAttribute("BoneQCT.CalibrationJSON", document)
    assert has_calibration(table)
    assert calibration_from_table_node(table).to_dict() == calibration.to_dict()


def test_per_slice_calibration_survives_the_table(scene):
    calibration = _manual_calibration()
    calibration.per_slice = {"k": [0, 10], "slope_hu_per_mg_cm3": [1.2, 1.4],
                             "intercept_hu": [-5.0, 5.0]}
    calibration.rods = [{"name": "A", "density_mg_cm3": 0.0, "measured_hu": -4.0, "sd_hu": 3.0,
                         "n_voxels": np.int64(120), "residual_hu": np.float64(0.5),
                         "residual_mg_cm3": 0.4, "center_ras_mm": np.array([1.0, 2.0, 3.0])}]
    table = calibration_to_table_node(calibration)
    assert table.GetNumberOfRows() == 1
    rebuilt = calibration_from_table_node(table)
    hu = np.full((11, 2, 2), 100.0)
    np.testing.assert_allclose(rebuilt.hu_to_bmd(hu, k_index=range(11)),
                               calibration.hu_to_bmd(hu, k_index=range(11)))
    assert rebuilt.rods[0]["center_ras_mm"] == [1.0, 2.0, 3.0]


def test_calibration_table_rows_from_phantom_fit(scene):
    try:
        from boneqct.calibration import calibrate_with_phantom
    except ImportError as exc:
        pytest.skip(f"phantom calibration is not available yet ({exc})")
    calibration = calibrate_with_phantom(_spine_phantom_volume(), "mindways-model3")
    table = calibration_to_table_node(calibration)
    assert table.GetNumberOfRows() == len(calibration.rods) >= 2
    values = table.GetTable()  # full precision (GetCellText rounds for display)
    for row, rod in enumerate(calibration.rods):
        assert table.GetCellText(row, 0) == rod["name"]
        assert values.GetValue(row, 1).ToDouble() == pytest.approx(rod["density_mg_cm3"])
        assert values.GetValue(row, 2).ToDouble() == pytest.approx(rod["measured_hu"])
        assert values.GetValue(row, 3).ToDouble() == pytest.approx(rod["sd_hu"])
        assert values.GetValue(row, 4).ToInt() == rod["n_voxels"]
        assert values.GetValue(row, 5).ToDouble() == pytest.approx(rod["residual_hu"])


def test_phantom_and_manual_calibration_from_nodes(scene):
    from boneqct.calibration import calibrate_with_phantom
    from BoneQCTLib.calibration import (
        manual_calibration_to_table_node,
        phantom_calibration_to_table_node,
    )

    volume = _spine_phantom_volume()
    node = update_node_from_volume(volume, name="ct")
    table = phantom_calibration_to_table_node(node, "mindways-model3")
    expected = calibrate_with_phantom(volume, "mindways-model3")
    fitted = calibration_from_table_node(table)
    assert fitted.slope_hu_per_mg_cm3 == expected.slope_hu_per_mg_cm3
    assert fitted.intercept_hu == expected.intercept_hu
    assert table.GetName() == "ct calibration (mindways-model3)"
    manual = calibration_from_table_node(manual_calibration_to_table_node(1.5, -10.0, "HA"))
    assert (manual.slope_hu_per_mg_cm3, manual.intercept_hu, manual.material) == (1.5, -10.0, "HA")
    with pytest.raises(ValueError, match="Select the CT volume"):
        phantom_calibration_to_table_node(None, "mindways-model3")


def test_calibration_from_table_without_calibration_explains(scene):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode")
    with pytest.raises(ValueError, match="Calibrate"):
        calibration_from_table_node(table)


def test_missing_python_packages_reports_only_absent_ones():
    assert missing_python_packages({"numpy": "numpy", "boneqct_no_such_package": "x"}) == [
        "boneqct_no_such_package"
    ]


def test_dependency_guard_asks_then_installs_what_is_missing(monkeypatch):
    from BoneQCTLib import dependencies

    installed = []
    monkeypatch.setattr(slicer.util, "pip_install", installed.append)
    requirements = {"numpy": "numpy", "boneqct_no_such_package": "boneqct-no-such-package>=1"}
    asked = []
    assert not dependencies.ensure_python_packages(lambda m: asked.append(m) or False, requirements)
    assert asked == [["boneqct_no_such_package"]] and installed == []
    assert dependencies.ensure_python_packages(lambda m: True, requirements)
    assert installed == ["boneqct-no-such-package>=1"]
    assert dependencies.ensure_python_packages(lambda m: pytest.fail("asked"), {"numpy": "numpy"})


def test_requirements_resource_names_import_and_pip_names():
    from BoneQCTLib.dependencies import read_requirements

    requirements = read_requirements()
    assert requirements["pyamg"] == "pyamg"
    assert requirements["openjpeg"] == "pylibjpeg-openjpeg"
    assert not {"numpy", "vtk", "SimpleITK"} & set(requirements)


def save_and_reload(scene, folder: Path):
    """Save every table node of ``scene`` (TSV storage) and the scene (.mrml) into ``folder``,
    and load it into a new scene, as Slicer's Save and Load Scene do."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
        table = scene.GetNthNodeByClass(index, "vtkMRMLTableNode")
        storage = table.CreateDefaultStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(folder / f"{table.GetID()}.tsv"))
        table.SetAndObserveStorageNodeID(storage.GetID())
        assert storage.WriteData(table)
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    reloaded = vtkMRMLScene()
    reloaded.SetURL(str(folder / "scene.mrml"))
    assert reloaded.Connect()
    return reloaded


def save_with_volumes_and_reload(scene, folder: Path):
    """:func:`save_and_reload`, with every scalar volume node (label maps included) of ``scene``
    first saved as NRRD (``vtkMRMLVolumeArchetypeStorageNode``), as Slicer's Save Scene does."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        volume = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        storage = volume.CreateDefaultStorageNode()
        assert storage.IsA("vtkMRMLVolumeArchetypeStorageNode")
        scene.AddNode(storage)
        storage.SetFileName(str(folder / f"{volume.GetID()}.nrrd"))
        volume.SetAndObserveStorageNodeID(storage.GetID())
        assert storage.WriteData(volume)
    return save_and_reload(scene, folder)


def report_text(path: Path) -> str:
    """The text of a PDF report without its generation time (pypdf)."""
    import re

    from pypdf import PdfReader

    text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
    return re.sub(r"generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "generated", text)


def test_result_documents_survive_scene_save_and_reload(scene, tmp_path, monkeypatch):
    """Spine and calibration tables carry their documents (BoneQCT.<Kind>.JSON) through a saved
    and reloaded scene: read back, rebuilt with from_dict, and equal to the one before saving."""
    monkeypatch.syspath_prepend(str(REPO / "QCTBoneDensity"))
    from QCTBoneDensityLib.spine import spine_result_from_table_node, spine_result_to_table_node

    from boneqct.calibration import calibrate_with_phantom
    from boneqct.phantoms import make_spine_phantom
    from boneqct.spine.options import SpineOptions
    from boneqct.spine.pipeline import analyze_spine
    from BoneQCTLib.tables import read_document

    phantom = make_spine_phantom()
    calibration = calibrate_with_phantom(phantom.volume, "mindways-model3")
    seeds = {v["level"]: np.asarray(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"]}
    spine = analyze_spine(phantom.volume, calibration, SpineOptions(levels_used=("L1", "L2")),
                          seeds=seeds)
    calibration_table = calibration_to_table_node(calibration, name="calibration")
    spine_table = spine_result_to_table_node(spine, name="spine")
    before = {"Calibration": read_document(calibration_table, "Calibration"),
              "Spine": read_document(spine_table, "Spine")}

    reloaded = save_and_reload(scene, tmp_path)
    slicer.mrmlScene = reloaded
    tables = {reloaded.GetFirstNodeByName(name) for name in ("calibration", "spine")}
    assert None not in tables
    calibration_again = reloaded.GetFirstNodeByName("calibration")
    spine_again = reloaded.GetFirstNodeByName("spine")
    assert read_document(calibration_again, "Calibration") == before["Calibration"]
    assert read_document(spine_again, "Spine") == before["Spine"]
    assert calibration_from_table_node(calibration_again).to_dict() == calibration.to_dict()
    assert spine_result_from_table_node(spine_again).to_dict() == spine.to_dict()
    assert spine_again.GetNumberOfRows() == len(spine.levels)
    assert spine_again.GetColumnUnitLabel("BMD (mg/cm3)") == "mg/cm3"
