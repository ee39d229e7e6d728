"""Synthetic 4D phantoms with known motion (cardiac cine MR, respiratory 4D CT) and synthetic scanner exports."""
