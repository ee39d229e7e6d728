"""Baselines the student is measured against: the linear blend, elastix and VoxelMorph registrations scaled linearly."""
