"""Convergence checks and the diagnosis of a fit (divergences, funnels, non-identified directions), with advice."""
