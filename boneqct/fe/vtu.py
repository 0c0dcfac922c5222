"""The solved mesh as a VTK unstructured grid (.vtu) that opens in Slicer and ParaView.

Points are in RAS mm (Slicer's frame). Point data: ``displacement_mm`` (RAS). Cell data (per
element): ``material`` (1 bone, 2 PMMA), ``bmd_mg_cm3``, ``modulus_mpa``, ``von_mises_mpa``,
``sed_mpa`` (strain energy density, MPa = mJ/mm3), ``effective_strain``,
``min_principal_strain``, ``max_principal_strain``, ``axial_strain`` (along the body axis),
``yielded`` (nonlinear: element with plastic strain at an integration point; ``von_mises_mpa``
is then of the element-mean return-mapped stress).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vtk
from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

from boneqct.fe.analysis import Model, Solution, element_fields
from boneqct.io import atomic_path


def unstructured_grid(model: Model, solution: Solution) -> vtk.vtkUnstructuredGrid:
    """The mesh with its fields (see the module docstring)."""
    mesh = model.mesh
    node_ras = mesh.node_ras(model.assembler.node_kji())
    rotation = mesh.node_ijk_to_ras[:3, :3] / mesh.element_mm  # frame axes as columns
    displacement_ras = solution.displacement_mm.reshape(-1, 3) @ rotation.T
    grid = vtk.vtkUnstructuredGrid()
    points = vtk.vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(node_ras), deep=True))
    grid.SetPoints(points)
    connectivity = model.assembler.element_nodes
    n_cells = len(connectivity)
    cells = vtk.vtkCellArray()
    offsets = numpy_to_vtkIdTypeArray(np.arange(0, 8 * n_cells + 1, 8, dtype=np.int64), deep=True)
    conn = numpy_to_vtkIdTypeArray(np.ascontiguousarray(connectivity.ravel(), dtype=np.int64),
                                   deep=True)
    cells.SetData(offsets, conn)
    grid.SetCells(vtk.VTK_HEXAHEDRON, cells)
    _add(grid.GetPointData(), "displacement_mm", displacement_ras)
    fields = element_fields(model, solution)
    cell_fields = {
        "material": fields["material"],
        "bmd_mg_cm3": fields["bmd_mg_cm3"],
        "modulus_mpa": fields["modulus_mpa"],
        "von_mises_mpa": fields["von_mises_mpa"],
        "sed_mpa": fields["sed_mpa"],
        "effective_strain": fields["effective_strain"],
        "min_principal_strain": fields["principal_strains"][:, 0],
        "max_principal_strain": fields["principal_strains"][:, 2],
        "axial_strain": fields["strain"][:, 2],
        "yielded": fields["yielded"].astype(np.uint8),
    }
    for name, values in cell_fields.items():
        _add(grid.GetCellData(), name, values)
    grid.GetCellData().SetActiveScalars("effective_strain")
    return grid


def _add(data, name: str, values: np.ndarray) -> None:
    """Attach a numpy array (n,) or (n, c) as a named VTK array."""
    array = numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    array.SetName(name)
    data.AddArray(array)


def write_vtu(grid: vtk.vtkUnstructuredGrid, path: str | Path) -> Path:
    """Write an unstructured grid as binary, compressed .vtu, atomically."""
    with atomic_path(path) as tmp:
        writer = vtk.vtkXMLUnstructuredGridWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(grid)
        writer.SetDataModeToAppended()
        writer.SetCompressorTypeToZLib()
        if not writer.Write():
            raise OSError(f"cannot write {Path(path).name}")
    return Path(path)
