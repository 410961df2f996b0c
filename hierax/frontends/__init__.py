"""Front-ends: formula and nonlinear models, from a table to the model description, fitted through the results layer."""
