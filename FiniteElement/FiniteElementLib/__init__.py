"""MRML adapters of the Finite Element module (no ``qt``/``ctk``): the result adapters of
``FiniteElementLib.fe``. Volumes, calibration tables and vertebral inputs are read with the
shared ``BoneQCTLib`` (imported from there, not re-exported here).

Import from the submodules (``from FiniteElementLib.fe import run_fe``): this file imports
nothing, as ``BoneQCTLib``'s does.
"""
