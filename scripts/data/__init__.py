"""Data: synthetic phantoms, readers and writers of NIfTI and DICOM series, and the training datasets."""
