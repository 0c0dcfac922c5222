"""Coded concepts of the DICOM outputs: standard codes (DCM, SCT from pydicom's tables of the
standard's context groups; UCUM units), and a private coding scheme for the bone-specific
concepts for which no standard code was verified (DICOM PS3.3 8.2: a private scheme's
designator begins with "99")."""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

import boneqct

#: Designator of BoneQCT's private codes (unverified against any standard terminology).
PRIVATE_SCHEME = "99BONEQCT"


def coding_scheme_identification() -> Dataset:
    """The CodingSchemeIdentificationSequence item declaring ``PRIVATE_SCHEME``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "BoneQCT private codes"
    item.CodingSchemeResponsibleOrganization = "BoneQCT project"
    return item


def private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning)


def ucum(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, "UCUM", meaning)


MG_CM3 = ucum("mg/cm3", "milligram per cubic centimeter")
G_CM2 = ucum("g/cm2", "gram per square centimeter")
G = ucum("g", "gram")
CM2 = ucum("cm2", "square centimeter")
CM3 = ucum("cm3", "cubic centimeter")
MM3 = ucum("mm3", "cubic millimeter")
N = ucum("N", "newton")
N_MM = ucum("N/mm", "newton per millimeter")
ONE = ucum("1", "no units")
HU = codes.UCUM.HounsfieldUnit

#: Measurement names. Density (DCM 112118) with derivation Mean (SCT 373098007) is the
#: volumetric BMD; attenuation coefficient (DCM 112031) the mean CT number of an uncalibrated run.
DENSITY = codes.DCM.Density
MEAN = codes.SCT.Mean
STANDARD_DEVIATION = codes.SCT.StandardDeviation
ATTENUATION = codes.DCM.AttenuationCoefficient
VOLUME = codes.SCT.Volume
AREA = codes.SCT.Area
Z_SCORE = codes.DCM.ZScore
T_SCORE = private("T-SCORE", "T-score")
AREAL_BMD = private("ABMD", "Areal bone mineral density")
BMC = private("BMC", "Bone mineral content")
SHELL_BMD = private("SHELL-BMD", "Bone mineral density of the thread shell")
SHELL_HU = private("SHELL-HU", "Mean CT number of the thread shell")
MIN_SEGMENT_BMD = private("MIN-SEG-BMD", "Lowest segment bone mineral density along the screw")
MIN_SEGMENT_HU = private("MIN-SEG-HU", "Lowest segment mean CT number along the screw")
CORTICAL_CONTACT = private("CORT-CONTACT", "Cortical contact fraction of the thread shell")
STIFFNESS = private("STIFFNESS", "Axial compressive stiffness")
STRENGTH = private("STRENGTH", "Axial compressive strength")
CATEGORY = private("CATEGORY", "Bone density category")
CEMENT = private("CEMENT", "Cement augmentation suggested")
FRAGILE = private("FRAGILE", "Fragile bone strength")
SOURCE_NOTE = private("SOURCE-NOTE", "Source image reference")
YES, NO = codes.SCT.Yes, codes.SCT.No

#: Procedure, finding types and sites.
PROCEDURE = codes.DCM.BoneMineralDensitometry
CT = codes.SCT.ComputedTomography
BONE = codes.SCT.Bone
FEMUR = codes.SCT.Femur
HEAD_OF_FEMUR = codes.SCT.HeadOfFemur
PROXIMAL_FEMUR = codes.SCT.ProximalFemur
BONE_SCREW = codes.SCT.BoneScrew
SPINE = codes.SCT.Spine
TISSUE = codes.SCT.Tissue
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
PHYSICAL_OBJECT = codes.SCT.PhysicalObject
DEVICE = codes.DCM.Device


def algorithm() -> hd.AlgorithmIdentificationSequence:
    """The algorithm named in the SEG's segments (a new sequence per use)."""
    return hd.AlgorithmIdentificationSequence(
        name="BoneQCT", family=codes.cid7162.MorphologicalOperations,
        version=boneqct.__version__)


def vertebra(level: str | None):
    """SCT code of a vertebra by its name ("L1", "T12"), or the spine when unknown."""
    return getattr(codes.SCT, f"{level}Vertebra", SPINE) if level else SPINE


def yes_no(flag: bool):
    return YES if flag else NO
