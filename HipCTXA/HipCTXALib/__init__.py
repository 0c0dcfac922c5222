"""MRML adapters of the Hip CTXA module (no ``qt``/``ctk``).

The hip adapters (``hip``) turn the scene's nodes into the core's inputs and a ``HipResult`` into
nodes: femur segmentation, DXA transform, projection and region volumes, results table. Volumes
and calibration tables are read with the shared ``BoneQCTLib`` (imported from there, not
re-exported here).

Import from the submodules (``from HipCTXALib.hip import run_hip``): this file imports
nothing, as ``BoneQCTLib``'s does.
"""
