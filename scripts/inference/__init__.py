"""Inference: the program of configs/inference.json (inputs, time points, the network step, writers) and export."""
