"""Intensity transforms between the scanner's units and the networks' [0, 1]."""
