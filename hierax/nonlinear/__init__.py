"""Nonlinear multilevel models: expressions with per-parameter sub-formulas."""

from .expression import FUNCTIONS, parse_expression
from .model import NonlinearModel, Param, latent, param

__all__ = ["FUNCTIONS", "NonlinearModel", "Param", "latent", "param", "parse_expression"]
