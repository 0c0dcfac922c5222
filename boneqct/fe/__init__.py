"""Vertebral strength by voxel finite elements (QCT-FE).

Calibrated density + vertebral body mask -> cubic hexahedral mesh in the body's axis frame
(``mesh``) -> moduli from a selectable density-modulus law (``materials``), PMMA endplate
layers, uniaxial compression along the body axis (``analysis``) -> stiffness (N/mm),
strength (N) by the linear 0.68% rule, the Pistoia criterion or an elastic-perfectly-plastic
analysis to 2% apparent strain, fields to a VTK unstructured grid (``vtu``). The stiffness
operator is applied matrix-free on the voxel lattice from one reference element matrix and
preconditioned by geometric multigrid (``operator``), solved by CG (``solver``); the
assembled block-sparse matrix (``assembly``) serves the pyamg alternative. ``export`` writes
the material-mapped model for CalculiX/Abaqus (.inp) and FEBio (.feb); ``calculix`` runs
CalculiX on it for verification. ``femur`` is the proximal femur in a sideways fall
(``boneqct fe-hip``).
"""
