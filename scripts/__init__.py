"""TMSDF-KD: temporal modulated multi-scale deformation fusion for 4D medical image interpolation.

The bundle's Python code. Configs in ``configs/`` import it as ``scripts`` (the bundle root is on ``sys.path``
when ``python -m monai.bundle run`` runs from it); ``python -m scripts --help`` lists the command-line verbs.
"""
