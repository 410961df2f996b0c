"""Formula models: lme4/brms-style multilevel formulas parsed with ``formulae``."""

from hierax.frontends.formula.design import Design, build_design
from hierax.frontends.formula.terms import ParsedFormula, parse_formula

__all__ = ["Design", "ParsedFormula", "build_design", "parse_formula"]
