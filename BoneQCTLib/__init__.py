"""BoneQCTLib: the Slicer support shared by the BoneQCT modules (QCTBoneDensity, HipCTXA,
FiniteElement), installed beside them like Slicer's DICOMLib. The modules import it and never
each other.

- ``volumes``: volume nodes <-> ``boneqct.volume.Volume``, label maps with named colours;
- ``tables``: the one column-spec table writer (units and descriptions, as SegmentStatistics)
  and the result document stored on its table (``BoneQCT.<Kind>.JSON``);
- ``calibration``: calibration tables (write, read back, summary);
- ``vertebrae``: seed points by level and vertebra labels from the scene;
- ``dependencies``: the dependency guard every module action calls (``requirements.txt``);
- ``widgets``: the parameter-node lifecycle mixin of the module widgets.

Import the submodules (``from BoneQCTLib.volumes import volume_from_node``): this file imports
nothing, so loading the widget mixin does not load numpy or the core.
"""
