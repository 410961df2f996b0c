"""Exact marginalization (collapsed sampling) of linear-Gaussian parameters."""

from .formula import MarginalPlan, fit_marginalized, plan_marginalization

__all__ = ["MarginalPlan", "fit_marginalized", "plan_marginalization"]
