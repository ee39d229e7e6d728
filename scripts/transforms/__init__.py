"""Transforms of volumes and series: intensities between the scanner's units and the networks' [0, 1]
(:mod:`.intensity`), and the moving region of a series (:mod:`.motion_roi`).
"""
