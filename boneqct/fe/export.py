"""Export of a material-mapped voxel model to other finite-element solvers: CalculiX/Abaqus
``.inp`` and FEBio ``.feb`` (FEBio 4.0 format).

Both files hold the same model: the nodes in the model's axis frame (mm; z is the load axis,
the frame-to-RAS matrix is written in the file's header), the 8-node hexahedra (CalculiX's
C3D8 and FEBio's hex8 share VTK_HEXAHEDRON's node order), one linear elastic isotropic
material per distinct modulus (bone elements of equal modulus share one; PMMA is its own
material ``PMMA``; optionally bone moduli grouped into at most ``max_materials`` log-spaced
bins, each material the mean modulus of its elements: the .feb default, as FEBio builds one
domain per material), Poisson's ratio ``POISSON_RATIO``, and one static load step: the loaded
nodes (``LOAD``) displaced ``applied_mm`` down the z axis, the zero-displacement constraints as
one node set per direction (``FIX_X``, ``FIX_Y``, ``FIX_Z``). Units: mm, N, MPa.

The CalculiX deck is verified: ``ccx`` on it reproduces our reaction force
(Testing/test_fe_export.py). The FEBio file is checked by parsing it back (counts, materials,
node sets), not by running FEBio, which is not installed here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boneqct.errors import FEError
from boneqct.fe.analysis import Model
from boneqct.fe.materials import POISSON_RATIO
from boneqct.fe.mesh import PMMA
from boneqct.io import atomic_path, write_text_atomic

#: Export formats and their file suffixes.
FORMATS = {"inp": ".inp", "feb": ".feb"}
#: Node sets of the zero-displacement constraints, by direction (x, y, z of the axis frame).
FIXED_SETS = ("FIX_X", "FIX_Y", "FIX_Z")
#: Node set of the prescribed displacement along z.
LOAD_SET = "LOAD"
#: Bone materials of an FEBio file at most (one part and domain each); the .inp keeps every
#: distinct modulus (CalculiX handles one material per element of a 1 mm vertebra).
FEB_MAX_MATERIALS = 256


@dataclass
class ExportModel:
    """What both writers need, 1-based numbering (as both file formats use).

    Attributes:
        node_xyz_mm: (n_nodes, 3) node coordinates in the axis frame (mm).
        element_nodes: (n_elements, 8) node numbers (1-based, VTK_HEXAHEDRON order).
        materials: (name, modulus MPa, element numbers 1-based) per material.
        node_sets: set name -> node numbers (1-based): ``FIXED_SETS`` and ``LOAD_SET``.
        applied_mm: displacement of the loaded nodes down the z axis (mm).
        frame_to_ras: 4x4 matrix taking axis-frame mm to RAS mm.
        max_modulus_deviation: largest relative difference between an element's modulus and
            its material's (0 without grouping).
    """

    node_xyz_mm: np.ndarray
    element_nodes: np.ndarray
    materials: list[tuple[str, float, np.ndarray]]
    node_sets: dict[str, np.ndarray]
    applied_mm: float
    frame_to_ras: np.ndarray
    max_modulus_deviation: float = 0.0


def _bone_groups(modulus: np.ndarray, max_materials: int | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(group moduli, group of each element): every distinct modulus, or at most
    ``max_materials`` log-spaced bins holding their elements' mean modulus."""
    moduli, group = np.unique(modulus, return_inverse=True)
    if max_materials is None or len(moduli) <= max_materials:
        return moduli, group
    edges = np.geomspace(moduli[0], moduli[-1], max_materials + 1)
    bins = np.clip(np.searchsorted(edges, modulus, side="right") - 1, 0, max_materials - 1)
    _, group = np.unique(bins, return_inverse=True)
    means = np.bincount(group, weights=modulus) / np.bincount(group)
    return means, group


def export_data(model: Model, modulus_mpa: np.ndarray, applied_mm: float,
                max_materials: int | None = None) -> ExportModel:
    """The model with element moduli ``modulus_mpa`` (MPa) and the loaded nodes displaced
    ``applied_mm`` (mm, positive = towards -z) in the writers' form; bone moduli grouped into
    at most ``max_materials`` materials (None: one per distinct modulus)."""
    modulus = np.asarray(modulus_mpa, float)
    n_elements = len(model.assembler.element_nodes)
    if modulus.shape != (n_elements,) or not np.all(np.isfinite(modulus) & (modulus > 0)):
        raise FEError(f"Export needs one positive modulus per element ({n_elements}); got an "
                      f"array of shape {modulus.shape}. Pass the model's modulus_mpa.")
    mesh = model.mesh
    h = mesh.element_mm
    node_xyz = model.assembler.node_kji()[:, ::-1] * h
    is_pmma = mesh.element_values(mesh.material_kji) == PMMA
    materials = []
    if is_pmma.any():
        pmma_moduli = np.unique(modulus[is_pmma])
        if len(pmma_moduli) != 1:
            raise FEError("The PMMA elements have different moduli; export expects one.")
        materials.append(("PMMA", float(pmma_moduli[0]), np.flatnonzero(is_pmma) + 1))
    bone = np.flatnonzero(~is_pmma)
    moduli, group = _bone_groups(modulus[bone], max_materials)
    deviation = float(np.max(np.abs(moduli[group] / modulus[bone] - 1.0), initial=0.0))
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(len(moduli) + 1))
    materials += [(f"BONE{m + 1}", float(value), bone[order[starts[m]:starts[m + 1]]] + 1)
                  for m, value in enumerate(moduli)]
    fixed = model.fixed.reshape(-1, 3).copy()
    loaded = np.zeros(fixed.shape, bool)
    loaded.reshape(-1)[model.top_z_dofs] = True
    fixed &= ~loaded
    node_sets = {name: np.flatnonzero(fixed[:, d]) + 1 for d, name in enumerate(FIXED_SETS)}
    node_sets[LOAD_SET] = np.flatnonzero(loaded[:, 2]) + 1
    frame_to_ras = mesh.node_ijk_to_ras.copy()
    frame_to_ras[:3, :3] /= h
    return ExportModel(node_xyz, model.assembler.element_nodes + 1, materials, node_sets,
                       float(applied_mm), frame_to_ras, deviation)


def _numbers(values: np.ndarray, per_line: int = 16) -> list[str]:
    """Comma-separated integers, ``per_line`` a line (CalculiX allows at most 16)."""
    return [",".join(map(str, values[i:i + per_line])) for i in range(0, len(values), per_line)]


def _frame_comment(data: ExportModel) -> str:
    """The frame-to-RAS matrix and the material grouping as one line of text."""
    rows = ";".join(",".join(f"{v:.9g}" for v in row) for row in data.frame_to_ras[:3])
    return (f"axis frame (mm) to RAS (mm), 3x4 rows: {rows}; element moduli within "
            f"{data.max_modulus_deviation:.2%} of their material's")


def write_inp(model: Model, path: str | Path, applied_mm: float, solver: str = "SPOOLES",
              modulus_mpa: np.ndarray | None = None, max_materials: int | None = None) -> Path:
    """Write the model as a CalculiX/Abaqus input deck (see the module docstring) with
    CalculiX's *STATIC ``solver`` (SPOOLES direct, or ITERATIVE CHOLESKY), atomically; the
    element moduli are ``modulus_mpa`` (default: the model's), every distinct one a material
    unless ``max_materials`` groups them."""
    data = export_data(model, model.modulus_mpa if modulus_mpa is None else modulus_mpa,
                       applied_mm, max_materials)
    lines = ["*HEADING", "BoneQCT voxel model (mm, N, MPa)", f"** {_frame_comment(data)}",
             "*NODE"]
    lines += [f"{n + 1},{x:.6f},{y:.6f},{z:.6f}" for n, (x, y, z) in enumerate(data.node_xyz_mm)]
    lines.append("*ELEMENT,TYPE=C3D8,ELSET=EALL")
    lines += [f"{e + 1}," + ",".join(map(str, row)) for e, row in enumerate(data.element_nodes)]
    for name, modulus, members in data.materials:
        lines.append(f"*ELSET,ELSET=E{name}")
        lines += _numbers(members)
        lines += [f"*MATERIAL,NAME={name}", "*ELASTIC", f"{modulus:.17g},{POISSON_RATIO}",
                  f"*SOLID SECTION,ELSET=E{name},MATERIAL={name}"]
    for name, members in data.node_sets.items():
        if len(members):
            lines.append(f"*NSET,NSET={name}")
            lines += _numbers(members)
    lines += ["*STEP", f"*STATIC,SOLVER={solver}", "*BOUNDARY"]
    lines += [f"{name},{d + 1},{d + 1},0" for d, name in enumerate(FIXED_SETS)
              if len(data.node_sets[name])]
    lines += [f"{LOAD_SET},3,3,{-data.applied_mm:.9g}",
              f"*NODE PRINT,NSET={LOAD_SET},TOTALS=ONLY", "RF", "*END STEP"]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def write_feb(model: Model, path: str | Path, applied_mm: float,
              modulus_mpa: np.ndarray | None = None,
              max_materials: int | None = FEB_MAX_MATERIALS) -> Path:
    """Write the model as an FEBio 4.0 input file (see the module docstring), atomically: one
    part (``Elements`` block and ``SolidDomain``) per material, "isotropic elastic" materials,
    "zero displacement" and "prescribed displacement" boundary conditions, one static step
    ramped by load controller 1, the loaded nodes' reaction (Rz) logged; bone moduli grouped
    into at most ``max_materials`` materials (None: every distinct modulus)."""
    data = export_data(model, model.modulus_mpa if modulus_mpa is None else modulus_mpa,
                       applied_mm, max_materials)
    root = ET.Element("febio_spec", version="4.0")
    root.append(ET.Comment(f" BoneQCT voxel model (mm, N, MPa); {_frame_comment(data)} "))
    ET.SubElement(root, "Module", type="solid")
    control = ET.SubElement(root, "Control")
    for tag, text in (("analysis", "STATIC"), ("time_steps", "1"), ("step_size", "1")):
        ET.SubElement(control, tag).text = text
    ET.SubElement(control, "solver", type="solid")
    material = ET.SubElement(root, "Material")
    mesh = ET.SubElement(root, "Mesh")
    nodes = ET.SubElement(mesh, "Nodes", name="nodes")
    for n, (x, y, z) in enumerate(data.node_xyz_mm):
        ET.SubElement(nodes, "node", id=str(n + 1)).text = f"{x:.6f},{y:.6f},{z:.6f}"
    domains = ET.SubElement(root, "MeshDomains")
    for m, (name, modulus, members) in enumerate(data.materials):
        entry = ET.SubElement(material, "material", id=str(m + 1), name=name,
                              type="isotropic elastic")
        ET.SubElement(entry, "E").text = f"{modulus:.17g}"
        ET.SubElement(entry, "v").text = f"{POISSON_RATIO}"
        part = ET.SubElement(mesh, "Elements", type="hex8", name=f"P{name}")
        for e in members:
            ET.SubElement(part, "elem", id=str(e)).text = ",".join(
                map(str, data.element_nodes[e - 1]))
        ET.SubElement(domains, "SolidDomain", name=f"P{name}", mat=name)
    for name, members in data.node_sets.items():
        if len(members):
            ET.SubElement(mesh, "NodeSet", name=name).text = ",".join(map(str, members))
    boundary = ET.SubElement(root, "Boundary")
    for d, name in enumerate(FIXED_SETS):
        if len(data.node_sets[name]):
            bc = ET.SubElement(boundary, "bc", name=name, node_set=name,
                               type="zero displacement")
            for axis, tag in enumerate(("x_dof", "y_dof", "z_dof")):
                ET.SubElement(bc, tag).text = "1" if axis == d else "0"
    bc = ET.SubElement(boundary, "bc", name=LOAD_SET, node_set=LOAD_SET,
                       type="prescribed displacement")
    ET.SubElement(bc, "dof").text = "z"
    ET.SubElement(bc, "value", lc="1").text = f"{-data.applied_mm:.9g}"
    ET.SubElement(bc, "relative").text = "0"
    controller = ET.SubElement(ET.SubElement(root, "LoadData"), "load_controller", id="1",
                               name="ramp", type="loadcurve")
    ET.SubElement(controller, "interpolate").text = "LINEAR"
    points = ET.SubElement(controller, "points")
    ET.SubElement(points, "pt").text = "0,0"
    ET.SubElement(points, "pt").text = "1,1"
    logfile = ET.SubElement(ET.SubElement(root, "Output"), "logfile")
    ET.SubElement(logfile, "node_data", data="Rz", node_set=LOAD_SET, file="reaction_z.txt")
    ET.indent(root, space=" ")
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="ISO-8859-1", xml_declaration=True)
    return Path(path)


def parse_formats(formats) -> list[str]:
    """The export formats of a list or a comma-separated string ("inp,feb").

    Raises:
        FEError: an unknown or no format.
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise FEError(f"Unknown export format {', '.join(unknown) or '(none)'}; choose from "
                      f"{', '.join(FORMATS)} (e.g. --export inp,feb).")
    return formats


def export_model(model: Model, modulus_mpa: np.ndarray, folder: str | Path, formats,
                 applied_mm: float, name: str = "model") -> dict[str, Path]:
    """Write the model in each of ``formats`` ("inp", "feb"; a list or a comma-separated
    string) into ``folder`` as ``name.inp`` (every distinct modulus a material) /
    ``name.feb`` (at most ``FEB_MAX_MATERIALS`` bone materials); returns the paths by format.

    Args:
        model: the solved or unsolved model (mesh, boundary conditions).
        modulus_mpa: element moduli (MPa), e.g. ``model.modulus_mpa``.
        applied_mm: displacement of the loaded nodes (mm, positive = compression along -z).

    Raises:
        FEError: an unknown format.
    """
    formats = parse_formats(formats)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writers = {"inp": write_inp, "feb": write_feb}
    return {fmt: writers[fmt](model, folder / f"{name}{FORMATS[fmt]}", applied_mm,
                              modulus_mpa=modulus_mpa) for fmt in formats}


def write_model_files(out_dir: str | Path, model: Model, solution, stem: str,
                      export_formats=()) -> dict[str, Path]:
    """``<stem>.vtu`` of the solved model (fields for ParaView/Slicer) and, in each of
    ``export_formats``, ``<stem>_model.inp`` / ``.feb`` with the loaded nodes displaced as in
    ``solution``; returns the paths by key ("vtu", "inp", "feb")."""
    from boneqct.fe.vtu import unstructured_grid, write_vtu

    out_dir = Path(out_dir)
    paths = {"vtu": write_vtu(unstructured_grid(model, solution), out_dir / f"{stem}.vtu")}
    if export_formats:
        paths.update(export_model(model, model.modulus_mpa, out_dir, export_formats,
                                  applied_mm=solution.applied_mm, name=f"{stem}_model"))
    return paths


def write_fe_files(out_dir: str | Path, result, stem: str, write_report, metadata: dict | None,
                   anonymize: bool, export_formats=()) -> dict[str, Path]:
    """The output files of a finite-element result into ``out_dir``: ``<stem>.json``, the
    report ``<stem>_report.pdf`` (``write_report(path, result, metadata, anonymize)``) and,
    when ``result`` holds its solved model (not one read back from its JSON), the model files
    (:func:`write_model_files`); returns the paths by key ("json", "report", "vtu", "inp",
    "feb")."""
    from boneqct.io import write_json_atomic

    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "report": out_dir / f"{stem}_report.pdf"}
    if result.model is not None:
        paths.update(write_model_files(out_dir, result.model, result.solution, stem,
                                       export_formats))
    write_report(paths["report"], result, metadata or {}, anonymize)
    write_json_atomic(paths["json"], result.to_dict())
    return paths
