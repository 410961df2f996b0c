"""Nonlinear multilevel models: expressions with per-parameter sub-formulas."""

from hierax.frontends.nonlinear.model import NonlinearModel, Param, latent, param
from hierax.models.expression import FUNCTIONS, parse_expression

__all__ = ["FUNCTIONS", "NonlinearModel", "Param", "latent", "param", "parse_expression"]
