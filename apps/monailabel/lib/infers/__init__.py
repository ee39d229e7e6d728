from .interpolation import Interpolation
from .upsampling import Upsampling

__all__ = ["Interpolation", "Upsampling"]
