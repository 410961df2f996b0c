"""Inference engines: they read the model description (never a front-end) and return draws. NUTS with preconditioning, independence sampling, exact marginalization and quadrature."""
