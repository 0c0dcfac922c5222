"""Vertebral strength by voxel finite elements (QCT-FE).

Calibrated density + vertebral body mask -> cubic hexahedral mesh in the body's axis frame
(``mesh``) -> moduli from a selectable density-modulus law (``materials``), PMMA endplate
layers, uniaxial compression along the body axis (``analysis``) -> stiffness (N/mm),
strength (N) by the linear 0.68% rule, the Pistoia criterion or an elastic-perfectly-plastic
analysis to 2% apparent strain, fields to a VTK unstructured grid (``vtu``). The global
matrix is assembled vectorised from one reference element matrix (``assembly``) and solved by
preconditioned CG (``solver``). ``calculix`` exports the same model to CalculiX for
verification.
"""
