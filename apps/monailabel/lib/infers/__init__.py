from .interpolation import Interpolation

__all__ = ["Interpolation"]
