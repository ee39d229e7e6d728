"""Files in and out: NIfTI and DICOM readers and writers, the in-memory Series4D, the montage."""
