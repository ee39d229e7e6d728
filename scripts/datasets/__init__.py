"""Training and evaluation data: dataset protocols (ACDC, generic 4D NIfTI, 4D-Lung) as (I0, It, I1, t) triplets."""
