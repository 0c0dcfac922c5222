"""Export of the material-mapped model (boneqct.fe.export): CalculiX runs our .inp and
reproduces our linear reaction force; the FEBio .feb is parsed back and matches the model
(FEBio is not installed here, so the .feb is not solver-verified)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from boneqct.calibration import convert_volume_to_bmd, manual_calibration
from boneqct.errors import FEError
from boneqct.fe.analysis import build_model, solve_displacement
from boneqct.fe.calculix import ccx_executable, run_ccx_deck
from boneqct.fe.export import (
    FEB_MAX_MATERIALS,
    FIXED_SETS,
    LOAD_SET,
    export_data,
    export_model,
    write_feb,
    write_inp,
)
from boneqct.fe.mesh import BONE, PMMA, VoxelMesh, mesh_vertebral_body
from boneqct.phantoms import make_spine_phantom
from boneqct.phantoms.anatomy import SpinePhantomParams
from boneqct.spine.body import delineate_body_from_seed

needs_ccx = pytest.mark.skipif(ccx_executable() is None, reason="CalculiX (ccx) is not "
                               "installed: apt-get install calculix-ccx to run the check")


@pytest.fixture(scope="module")
def l2_model():
    """The phantom's L2 (100 mg/cm3, 1.5 mm cortex, tilted 8 degrees) alone, 1.5 mm elements,
    3 mm PMMA layers."""
    ph = make_spine_phantom(SpinePhantomParams(
        levels=("L2",), trabecular_bmd_mg_cm3=(100.0,), cortical_thickness_mm=1.5,
        spine_tilt_deg=8.0, phantom_present=False))
    cal = ph.truth["calibration"]
    bmd = convert_volume_to_bmd(ph.volume, manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                              cal["intercept_hu"]))
    level = ph.truth["vertebrae"][0]
    body = delineate_body_from_seed(ph.volume, np.array(level["body_center_ras_mm"]), "L2")
    mesh = mesh_vertebral_body(bmd, body.body_mask_kji, body.axis_ras, body.anterior_ras,
                               element_mm=1.5, pmma_mm=3.0)
    return build_model(mesh, "morgan2003")


def _cube_model(n: int = 12, bmd_mg_cm3: float = 150.0):
    """A homogeneous n^3 cube of bone, 1 mm elements, bonded platens."""
    shape = (n, n, n)
    mesh = VoxelMesh(1.0, np.full(shape, BONE, np.uint8), np.full(shape, bmd_mg_cm3), "K2HPO4",
                     np.eye(4), float(n), np.ones(shape))
    return build_model(mesh, "morgan2003")


@needs_ccx
@pytest.mark.parametrize("which", ["phantom_l2", "cube"])
def test_calculix_on_the_exported_deck_equals_our_reaction(which, l2_model, tmp_path):
    """CalculiX (SPOOLES, direct) on our exported .inp: reaction within 0.5% of ours."""
    model = l2_model if which == "phantom_l2" else _cube_model()
    applied = 0.01 * model.mesh.bone_height_mm
    ours = solve_displacement(model, model.modulus_mpa, applied, rtol=1e-9)
    paths = export_model(model, model.modulus_mpa, tmp_path, "inp", applied_mm=applied)
    theirs = run_ccx_deck(paths["inp"])
    assert ours.reports[0].converged
    assert theirs == pytest.approx(ours.reaction_n, rel=5e-3)


def _feb_moduli(root) -> tuple[dict, np.ndarray, np.ndarray]:
    """Materials by name (id, E, v), each element's E and connectivity of a parsed .feb."""
    materials = {m.get("name"): (int(m.get("id")), float(m.find("E").text),
                                 float(m.find("v").text))
                 for m in root.find("Material").findall("material")}
    domains = {d.get("name"): d.get("mat") for d in root.find("MeshDomains")}
    parts = root.find("Mesh").findall("Elements")
    n = sum(len(part) for part in parts)
    modulus, connectivity = np.full(n, np.nan), np.zeros((n, 8), int)
    for part in parts:
        assert part.get("type") == "hex8"
        material = domains[part.get("name")]
        for e in part.findall("elem"):
            index = int(e.get("id")) - 1
            assert np.isnan(modulus[index])  # each element in exactly one part
            modulus[index] = materials[material][1]
            connectivity[index] = [int(v) for v in e.text.split(",")]
    return materials, modulus, connectivity


def test_feb_parses_back_to_the_model(l2_model, tmp_path):
    """The .feb (every distinct modulus a material) holds the model's nodes, elements, moduli
    (PMMA its own material) and boundary node sets; the prescribed value is the applied
    displacement."""
    model = l2_model
    applied = 0.2
    path = write_feb(model, tmp_path / "model.feb", applied, max_materials=None)
    root = ET.parse(path).getroot()
    assert root.tag == "febio_spec" and root.get("version") == "4.0"
    assert root.find("Module").get("type") == "solid"
    mesh = root.find("Mesh")
    nodes = mesh.find("Nodes").findall("node")
    assert len(nodes) == model.assembler.n_nodes
    xyz = np.array([[float(v) for v in n.text.split(",")] for n in nodes])
    assert np.allclose(xyz, model.assembler.node_kji()[:, ::-1] * model.mesh.element_mm,
                       atol=1e-6)
    materials, modulus, connectivity = _feb_moduli(root)
    assert sorted(i for i, _, _ in materials.values()) == list(range(1, len(materials) + 1))
    assert np.array_equal(modulus, model.modulus_mpa)
    assert np.array_equal(connectivity, model.assembler.element_nodes + 1)
    is_pmma = model.mesh.element_values(model.mesh.material_kji) == PMMA
    assert is_pmma.any() and "PMMA" in materials
    assert len(materials) == 1 + len(np.unique(model.modulus_mpa[~is_pmma]))
    assert all(v == 0.3 for _, _, v in materials.values())
    sets = {s.get("name"): np.array([int(v) for v in s.text.split(",")]) - 1
            for s in mesh.findall("NodeSet")}
    fixed = model.fixed.reshape(-1, 3)
    loaded = model.top_z_dofs // 3
    assert np.array_equal(np.sort(sets[LOAD_SET]), np.sort(loaded))
    for d, name in enumerate(FIXED_SETS):
        expected = np.flatnonzero(fixed[:, d])
        if d == 2:
            expected = np.setdiff1d(expected, loaded)
        assert np.array_equal(sets[name], expected)
    bcs = {bc.get("name"): bc for bc in root.find("Boundary")}
    assert bcs[LOAD_SET].get("type") == "prescribed displacement"
    assert float(bcs[LOAD_SET].find("value").text) == -applied
    for d, name in enumerate(FIXED_SETS):
        flags = [bcs[name].find(t).text for t in ("x_dof", "y_dof", "z_dof")]
        assert bcs[name].get("type") == "zero displacement" and flags.index("1") == d


def test_feb_groups_moduli_and_the_grouping_keeps_the_reaction(l2_model, tmp_path):
    """export_model's .feb holds at most FEB_MAX_MATERIALS bone materials (the phantom L2 has
    thousands of distinct moduli), each element's modulus within the deviation written in the
    file (under 1%); the same grouping in CalculiX changes the reaction by under 0.1%."""
    model = l2_model
    assert len(np.unique(model.modulus_mpa)) > 4 * FEB_MAX_MATERIALS
    path = export_model(model, model.modulus_mpa, tmp_path, "feb", applied_mm=0.2)["feb"]
    materials, modulus, _ = _feb_moduli(ET.parse(path).getroot())
    assert len(materials) <= 1 + FEB_MAX_MATERIALS
    deviation = export_data(model, model.modulus_mpa, 0.2, FEB_MAX_MATERIALS).max_modulus_deviation
    assert 0 < deviation < 0.01
    assert f"within {deviation:.2%}" in path.read_text(encoding="ISO-8859-1")[:1000]
    assert np.all(np.abs(modulus / model.modulus_mpa - 1) <= deviation * (1 + 1e-12))
    if ccx_executable() is not None:
        applied = 0.01 * model.mesh.bone_height_mm
        ours = solve_displacement(model, model.modulus_mpa, applied, rtol=1e-9)
        deck = write_inp(model, tmp_path / "grouped.inp", applied,
                         max_materials=FEB_MAX_MATERIALS)
        assert run_ccx_deck(deck) == pytest.approx(ours.reaction_n, rel=1e-3)


def test_export_refuses_unknown_format_and_wrong_moduli(tmp_path):
    model = _cube_model(3)
    with pytest.raises(FEError, match="format"):
        export_model(model, model.modulus_mpa, tmp_path, "vtk", applied_mm=0.1)
    with pytest.raises(FEError, match="modulus"):
        export_model(model, model.modulus_mpa[:-1], tmp_path, "inp", applied_mm=0.1)
    assert not list(tmp_path.iterdir())
