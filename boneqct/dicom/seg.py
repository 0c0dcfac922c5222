"""DICOM Segmentation (highdicom.seg.Segmentation) of masks on the source CT's grid: one
BINARY segment per mask (masks may overlap), frames on the source slices that hold any of
them."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

import boneqct
from boneqct.dicom import codes
from boneqct.dicom.source import DicomSource

#: Series number of the SEG.
SEG_SERIES_NUMBER = 902
#: Display colours of the segments in turn (CSS names; stored as CIELab, so that a viewer
#: such as Slicer shows each segment in a colour of its own).
COLORS = ("gold", "deepskyblue", "limegreen", "orchid", "tomato", "turquoise", "orange",
          "slateblue")


@dataclass
class Segment:
    """One segment: a boolean mask (KJI) on the analysed volume's grid and what it is."""

    label: str
    mask_kji: np.ndarray
    category: Code
    property_type: Code
    anatomic_region: Code | None = None


def segmentation(source: DicomSource, segments: list[Segment],
                 description: str) -> hd.seg.Segmentation | None:
    """The SEG of ``segments`` (segment n+1 is ``segments[n]``) on the slices of ``source``
    from the first to the last holding any mask voxel; None when every mask is empty."""
    occupied = np.flatnonzero(np.any([s.mask_kji.any(axis=(1, 2)) for s in segments], axis=0))
    if not segments or occupied.size == 0:
        return None
    first, last = int(occupied[0]), int(occupied[-1]) + 1
    pixels = np.stack([s.mask_kji[first:last] for s in segments], axis=-1).astype(bool)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=s.label[:64],
            segmented_property_category=s.category, segmented_property_type=s.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=codes.algorithm(), tracking_uid=generate_uid(),
            tracking_id=s.label[:64],
            display_color=hd.color.CIELabColor.from_string(COLORS[n % len(COLORS)]),
            anatomic_regions=[s.anatomic_region] if s.anatomic_region is not None else None)
        for n, s in enumerate(segments)]
    return hd.seg.Segmentation(
        source_images=source.headers[first:last], pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="BoneQCT", manufacturer_model_name="boneqct",
        software_versions=boneqct.__version__, device_serial_number="none",
        series_description=description[:64], content_label="BONEQCT",
        content_description=description[:64])
