"""Volume adapters: ``vtkMRMLScalarVolumeNode`` <-> :class:`boneqct.volume.Volume`.

Both sides carry geometry as a 4x4 IJK->RAS matrix and voxels KJI-ordered, so the
conversion is a copy: nothing is resampled or reoriented, and oblique directions and
anisotropic spacing survive the round trip exactly.
"""

from __future__ import annotations

import numpy as np
import slicer
import slicer.util

from boneqct.volume import Volume


def _ijk_to_ras_from_node(node) -> np.ndarray:
    """The node's IJK->RAS matrix as a 4x4 float array."""
    matrix = slicer.util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(matrix)
    return np.array(slicer.util.arrayFromVTKMatrix(matrix), dtype=float)


def volume_from_node(node) -> Volume:
    """Copy a scalar volume node into a core :class:`Volume`.

    Args:
        node: a ``vtkMRMLScalarVolumeNode`` (or label map node) with image data.

    Returns:
        A Volume whose ``array_kji`` is a copy of the node's voxels (so later edits to the node
        do not change it), whose ``ijk_to_ras`` is the node's IJK->RAS matrix, and whose
        metadata is empty (DICOM metadata is read by ``boneqct.io``, not from the scene).

    A parent transform on the node is not applied: measure in the volume's own RAS frame,
    or harden the transform first.
    """
    if node is None or node.GetImageData() is None:
        raise ValueError("The volume node is empty: select a volume that has image data.")
    array_kji = np.array(slicer.util.arrayFromVolume(node), copy=True)
    return Volume(array_kji=array_kji, ijk_to_ras=_ijk_to_ras_from_node(node), metadata={})


def update_node_from_volume(volume: Volume, node=None, name: str = "BoneQCT volume",
                            node_class: str = "vtkMRMLScalarVolumeNode"):
    """Write a core :class:`Volume` into a volume node, creating the node if needed.

    Args:
        volume: the core volume (KJI array and 4x4 IJK->RAS).
        node: an existing volume node to overwrite; None adds a new node to
            ``slicer.mrmlScene``.
        name: name of a newly created node (an existing node keeps its name).
        node_class: MRML class of a newly created node (e.g. ``vtkMRMLLabelMapVolumeNode``).

    Returns:
        The node, holding a copy of the voxels and exactly the volume's IJK->RAS matrix.
    """
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass(node_class, name)
        node.CreateDefaultDisplayNodes()
    matrix = slicer.util.vtkMatrixFromArray(np.asarray(volume.ijk_to_ras, dtype=float))
    was_modifying = node.StartModify()
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array_kji))
    node.EndModify(was_modifying)
    return node
