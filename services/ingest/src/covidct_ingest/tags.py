"""The DICOM tags an InstanceHeader is built from (read by the fast walker or pydicom)."""

from __future__ import annotations

# Binary (US/SS) tags; every other wanted tag holds text (CS, UI, LO, SH, DS, IS).
BINARY_TAGS = frozenset(
    {0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280103, 0x00280002, 0x00280120, 0x00280121}
)
WANTED_TAGS = BINARY_TAGS | frozenset(
    {
        0x00080008,  # ImageType
        0x00080016,  # SOPClassUID
        0x00080018,  # SOPInstanceUID
        0x00080060,  # Modality
        0x00080070,  # Manufacturer
        0x0008103E,  # SeriesDescription
        0x00180050,  # SliceThickness
        0x00181120,  # GantryDetectorTilt
        0x00181210,  # ConvolutionKernel
        0x0020000D,  # StudyInstanceUID
        0x0020000E,  # SeriesInstanceUID
        0x00200011,  # SeriesNumber
        0x00200013,  # InstanceNumber
        0x00200032,  # ImagePositionPatient
        0x00200037,  # ImageOrientationPatient
        0x00200052,  # FrameOfReferenceUID
        0x00201002,  # ImagesInAcquisition
        0x00280004,  # PhotometricInterpretation
        0x00280008,  # NumberOfFrames
        0x00280030,  # PixelSpacing
        0x00281052,  # RescaleIntercept
        0x00281053,  # RescaleSlope
    }
)
