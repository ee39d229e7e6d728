"""TMSDF networks: encoder, DFGen, time modulation, DFM, MSDF decoder, refinement, teacher and student."""

from scripts.networks.dfgen import DFGen
from scripts.networks.dfm import DFM
from scripts.networks.encoder import Encoder
from scripts.networks.msdf import MSDF
from scripts.networks.refine import Refinement
from scripts.networks.time_modulation import TimeModulation
from scripts.networks.tmsdf import Intermediates, Student, Teacher, TMSDFNet

__all__ = ["DFGen", "DFM", "Encoder", "Intermediates", "MSDF", "Refinement", "Student", "Teacher", "TMSDFNet", "TimeModulation"]
