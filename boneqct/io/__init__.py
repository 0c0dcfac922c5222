"""CT input and output.

``load_ct`` reads a DICOM folder or file list, NIfTI, NRRD or MHA/MHD into a
:class:`boneqct.volume.Volume` in HU with its IJK->RAS matrix and exam metadata;
``write_volume`` writes volumes and label maps with their geometry preserved.
"""

from boneqct.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "atomic": ("atomic_path", "write_json_atomic", "write_text_atomic"),
    "dicom": ("DICOMDIR_NAME", "SeriesInfo", "anonymized_metadata", "exam_metadata",
              "find_series", "load_dicom_series"),
    "images": ("is_volume_file", "read_volume_file", "volume_from_sitk", "volume_to_sitk",
               "write_volume"),
    "load": ("load_ct",),
    "boneqct.volume": ("Volume",),
})
