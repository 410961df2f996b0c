"""Formula models: lme4/brms-style multilevel formulas parsed with ``formulae``."""

from .build import build_model
from .design import Design, build_design
from .terms import ParsedFormula, parse_formula

__all__ = ["Design", "ParsedFormula", "build_design", "build_model", "parse_formula"]
