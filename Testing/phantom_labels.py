"""Vertebra label maps of the digital spine phantoms, as a segmentation tool writes them."""

from __future__ import annotations

import numpy as np

from boneqct.phantoms.anatomy import CORTICAL_BONE, POSTERIOR_ELEMENTS
from boneqct.spine.levels import VFA_LABEL_SCHEMES


def vertebra_labels(phantom, scheme: str):
    """The phantom's vertebrae as a segmentation tool labels them (body and posterior
    elements, as the phantom's compartment labels hold them at voxel centres), numbered in
    ``scheme``: each bone voxel belongs to the vertebra nearest along the spine's axis."""
    value_of = {level: value for value, level in VFA_LABEL_SCHEMES[scheme].items()}
    vertebrae = phantom.truth["vertebrae"]
    bone_kji = np.argwhere(np.isin(phantom.labels.array_kji, [CORTICAL_BONE, POSTERIOR_ELEMENTS]
                                   + [v["label"] for v in vertebrae]))
    axis = np.array(phantom.truth["spine_axis_ras"])
    along_mm = phantom.volume.ijk_to_ras_points(bone_kji[:, ::-1]) @ axis
    centres_mm = np.array([v["body_center_ras_mm"] for v in vertebrae]) @ axis
    nearest = np.argmin(np.abs(along_mm[:, None] - centres_mm[None, :]), axis=1)
    labels = np.zeros(phantom.labels.array_kji.shape, np.uint8)
    labels[tuple(bone_kji.T)] = np.array([value_of[v["level"]] for v in vertebrae])[nearest]
    return phantom.volume.with_array(labels)
