"""Exact integration of parameters (collapsed sampling), one planner per method.

``linear``: linear Gaussian models; ``nonlinear``: conditionally linear
parameters of nonlinear models (planned by ``nonlinear_plan`` from the
expression's affinity, ``affine``); ``latent``: per-row latent values by
quadrature; ``gaussian``, ``kernels`` and ``quadrature`` are the pure array
kernels, ``collapsed`` the run shared by all.
"""
