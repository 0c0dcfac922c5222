"""MRML adapters for the Finite Element module (no ``qt``/``ctk``).

The volume adapters are shared with the other BoneQCT modules and live in
``QCTBoneDensityLib``; this package re-exports them so the module has one import point.
FiniteElement-specific adapters (e.g. result tables) are added here with the module's pipeline.
"""

from QCTBoneDensityLib.volumes import update_node_from_volume, volume_from_node

__all__ = ["update_node_from_volume", "volume_from_node"]
