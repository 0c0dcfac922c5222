"""Spine QCT: vertebral body delineation, trabecular ROIs, per-level BMD and its interpretation.

Entry point: :func:`boneqct.spine.pipeline.analyze_spine`; files: ``boneqct.spine.outputs``.
"""
