"""Prior strings: arguments checked in NumPy, as NumPyro would check them, without compiling."""

from __future__ import annotations

import itertools

import numpyro
import pytest

from hierax.errors import ModelError
from hierax.models.priors import DISTRIBUTIONS, Prior, check_arguments, parse_prior


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Normal(0, -1)", "Normal's scale must be positive, got -1"),
        ("LKJ(0)", "LKJ's concentration must be positive"),
        ("StudentT(0, 0, 1)", "StudentT's df must be positive"),
        ("Uniform(2, 1)", r"Uniform's low \(2\) must be below high \(1\)"),
        ("LogUniform(1, 0.5)", "must be below"),
        ("TruncatedNormal(0, 1, low=2, high=1)", "must be below"),
        ("TruncatedNormal(0, -1, low=0)", "scale must be positive"),
        ("Normal(0, 1, 2)", "too many positional arguments"),
        ("Normal(0, 1, foo=2)", "unexpected keyword argument 'foo'"),
        ("LKJ(2, 3)", "no numeric parameter 'sample_method'"),
    ],
)
def test_invalid_arguments_are_named(text, fragment):
    with pytest.raises(ModelError, match=fragment):
        parse_prior(text, "b_x")


@pytest.mark.parametrize(
    "text",
    [
        "Normal(0, 2.5)",
        "StudentT(3, 0, 2.5)",
        "LKJ(2)",
        "TruncatedNormal(1, 0.5, low=0)",
        "Uniform(-1, 1)",
        "HalfNormal(1 / 0.5)",
        "Gamma(2, 0.1)",
        "Beta(2, 2)",
    ],
)
def test_valid_priors_pass(text):
    assert parse_prior(text, "b_x").text == text


def test_agrees_with_numpyros_own_validation():
    """Every distribution with one-parameter classes: accepted exactly when NumPyro accepts."""
    values = [-1.0, 0.0, 0.5, 2.0]
    for name, factory in DISTRIBUTIONS.items():
        if name in ("TruncatedNormal", "Uniform", "LogUniform") or not isinstance(factory, type):
            continue  # checked above: NumPyro does not order low and high
        count = len(factory.arg_constraints)
        for args in itertools.product(values, repeat=count):
            prior = Prior(text=name, name=name, args=args)
            try:
                with numpyro.validation_enabled(True):
                    prior.build(dim=2)
                numpyro_accepts = True
            except ValueError:
                numpyro_accepts = False
            try:
                check_arguments(prior)
                accepted = True
            except ValueError:
                accepted = False
            assert accepted == numpyro_accepts, (name, args)


def test_parsing_compiles_nothing(lowered_programs):
    for text in ["LKJ(3)", "StudentT(3, 0, 2.5)", "TruncatedNormal(0.5, 0.1, low=0)"]:
        parse_prior(text, "x")
    assert lowered_programs == []
