"""MRML adapters of the QCT Bone Density module: scene nodes <-> ``boneqct`` core objects.

Only ``slicer.vtkMRML*`` and ``slicer.util`` are used here (no ``qt``/``ctk``), so these
functions run and are tested under PyPI's ``slicer-core`` as well as inside Slicer. What the
other modules share (volumes, calibration tables, vertebral inputs, the table writer, the
dependency guard) is in ``BoneQCTLib``; this package holds the spine, tissue, QA, fracture and screw adapters.

Import from the submodules (``from QCTBoneDensityLib.spine import run_spine``): this file imports
nothing, as ``BoneQCTLib``'s does.
"""
