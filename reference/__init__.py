"""The lecture's model and loop in torch, the reference tinymf is compared against.

Never imports tinymf: the two sides share nothing but the data.
"""

from .model import MatrixFactorization, fit, parameters_numpy, train

__all__ = ["MatrixFactorization", "fit", "parameters_numpy", "train"]
