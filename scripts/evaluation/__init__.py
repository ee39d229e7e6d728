"""Evaluation: metrics, cases, methods side by side, reports, and the benchmark."""
