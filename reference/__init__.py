"""The lecture's model and loop in torch, the reference tinymf is compared against.

Never imports tinymf: the two sides share nothing but the data.
"""

from .model import MatrixFactorization, fit, parameters_numpy, train
from .saved import load_tinymf, state_dict_numpy

__all__ = [
    "MatrixFactorization",
    "fit",
    "load_tinymf",
    "parameters_numpy",
    "state_dict_numpy",
    "train",
]
