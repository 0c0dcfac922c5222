"""Volume adapters: ``vtkMRMLScalarVolumeNode`` <-> :class:`boneqct.volume.Volume`.

Both sides carry geometry as a 4x4 IJK->RAS matrix and voxels KJI-ordered, so the
conversion is a copy: nothing is resampled or reoriented, and oblique directions and
anisotropic spacing survive the round trip exactly.
"""

from __future__ import annotations

import os

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
        metadata is the exam of its DICOM header when the volume came from Slicer's DICOM
        database (:func:`exam_metadata_from_node`: patient, study, scanner, kVp ...), else empty.

    A parent transform on the node is not applied: measure in the volume's own RAS frame,
    or harden the transform first.
    """
    if node is None or node.GetImageData() is None:
        raise ValueError("The volume node is empty: select a volume that has image data.")
    array_kji = np.array(slicer.util.arrayFromVolume(node), copy=True)
    return Volume(array_kji=array_kji, ijk_to_ras=_ijk_to_ras_from_node(node),
                  metadata=exam_metadata_from_node(node))


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


#: Colours of labels 1, 2, ... (RGB 0-1) when the caller gives none, cycled over the labels.
LABEL_COLORS = ((0.90, 0.30, 0.25), (0.25, 0.65, 0.30), (0.25, 0.45, 0.85), (0.95, 0.75, 0.20),
                (0.65, 0.35, 0.80), (0.20, 0.75, 0.80), (0.90, 0.50, 0.70))


def label_color_table(names: dict[int, str], colors: dict | None = None, color_node=None,
                      name: str = "BoneQCT label colors"):
    """A user colour table naming each label value by ``names[value]``.

    Label 0 is transparent (the background; named ``names[0]``, default "Background"). Other
    labels take ``colors[value]`` (RGB 0-1) or, without it, :data:`LABEL_COLORS` in order;
    values not in ``names`` are left unnamed and transparent. ``color_node`` is overwritten
    when given.
    """
    if color_node is None:
        color_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    values = sorted(v for v in names if v > 0)
    color_node.SetTypeToUser()
    color_node.SetNumberOfColors(max(values, default=0) + 1)
    for value in range(color_node.GetNumberOfColors()):
        color_node.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
    color_node.SetColor(0, names.get(0, "Background"), 0.0, 0.0, 0.0, 0.0)
    for n, value in enumerate(values):
        r, g, b = (colors or {}).get(value, LABEL_COLORS[n % len(LABEL_COLORS)])
        color_node.SetColor(value, names[value], r, g, b, 1.0)
    return color_node


def labelmap_to_node(labels: Volume, names: dict[int, str], node=None, name: str = "BoneQCT labels",
                     colors: dict | None = None, colors_attribute: str = "BoneQCT.LabelColors",
                     quantity: str | None = None):
    """Write a core label volume into a label map volume node whose colour table names the labels.

    Args:
        labels: integer label volume on its grid (written as is: same voxels, same IJK->RAS).
        names: ``{label value: name}`` (:func:`label_color_table`).
        node: label map volume node to overwrite; None creates one named ``name``.
        colors: optional ``{label value: (r, g, b)}`` (0-1).
        colors_attribute: attribute marking the colour tables made for this kind of label map;
            the node's current colour table is overwritten when it carries it (a re-run adds
            no new colour node), else a new table named "<node name> colors" is made.
        quantity: optional ``BoneQCT.Quantity`` attribute of the node (what the labels mean).

    Returns:
        The label map volume node, displayed with the colour table.
    """
    if node is None:
        node = update_node_from_volume(labels, name=name, node_class="vtkMRMLLabelMapVolumeNode")
    else:
        update_node_from_volume(labels, node=node)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    current = display.GetColorNode() if display is not None else None
    reuse = current if current is not None and current.GetAttribute(colors_attribute) else None
    color_node = label_color_table(names, colors, reuse, name=f"{node.GetName()} colors")
    color_node.SetAttribute(colors_attribute, "1")
    if display is not None:
        display.SetAndObserveColorNodeID(color_node.GetID())
    if quantity is not None:
        node.SetAttribute("BoneQCT.Quantity", quantity)
    return node


def segments_to_volume(segmentation_node, segment_ids, reference_volume_node) -> Volume:
    """Segments of a segmentation node as a label map Volume on the reference volume's grid:
    voxel n + 1 for the n-th id of ``segment_ids`` (a vtkStringArray), 0 elsewhere. The
    temporary label map node (and the color table Slicer makes for it) is removed again.

    Raises:
        ValueError: Slicer could not export the segments.
    """
    scene = segmentation_node.GetScene() or slicer.mrmlScene
    temporary = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__BoneQCT_temporary_labels__")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, segment_ids, temporary, reference_volume_node):
            raise ValueError(f"The segmentation '{segmentation_node.GetName()}' could not be "
                             "exported to a label map.")
        return volume_from_node(temporary)
    finally:
        display = temporary.GetDisplayNode()
        if display is not None and display.GetColorNode() is not None \
                and display.GetColorNode().GetName() == temporary.GetName() + "_ColorTable":
            scene.RemoveNode(display.GetColorNode())
        scene.RemoveNode(temporary)


def dicom_file(node) -> str | None:
    """The file of the first DICOM instance a volume node was loaded from (Slicer's DICOM
    database), or None (not from DICOM, the file is gone, or no database: slicer-core)."""
    database = getattr(slicer, "dicomDatabase", None)
    uids = node.GetAttribute("DICOM.instanceUIDs") if node is not None else None
    if database is None or not uids:
        return None
    path = database.fileForInstance(uids.split()[0])
    return path if path and os.path.isfile(path) else None


def exam_metadata_from_node(node) -> dict:
    """The exam metadata of a volume node, read from the header of its first DICOM instance by
    the core (``boneqct.io.dicom.exam_metadata`` keys: patient, study, scanner, kVp ...; the
    values it has only), or {} when the volume did not come from DICOM. Identity is included:
    it goes to reports only (the table's exam document), never to logs."""
    path = dicom_file(node)
    if path is None:
        return {}
    import pydicom

    from boneqct.io.dicom import exam_metadata

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError):
        return {}
    return {key: value for key, value in exam_metadata(header).items() if value is not None}


def patient_age_and_sex(volume: Volume, age_years=None, sex=None) -> tuple[float | None, str | None]:
    """The patient's age (years) and sex ("F"/"M") given in the module, else those of the
    volume's DICOM header (as the command line does), else None."""
    age = age_years if age_years is not None else volume.metadata.get("patient_age_years")
    sex = sex or volume.metadata.get("patient_sex")
    return age, sex if sex in ("F", "M") else None
