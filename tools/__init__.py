"""Repository tools, outside the bundle package: the training scripts that reproduce the shipped weights, the md5
manifest of the weights (``update_large_files``) and the layer check and picture of ``scripts/`` (``import_graph``)."""
