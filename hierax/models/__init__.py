"""The model description and what turns it into densities: families, priors, expression trees, NumPyro building blocks, tracing. No inference here and no front-end."""
