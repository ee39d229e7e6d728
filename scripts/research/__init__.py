"""Research tools that are not the product: registration oracles, per-patient scoring, ablations, training curves.

Their own command list: ``python -m scripts.research <verb> --help``.
"""
