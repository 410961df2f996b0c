"""Splitting formulas into fixed part, group terms and brms addition terms."""

from __future__ import annotations

import pytest

from hierax.errors import ModelError
from hierax.frontends.formula.terms import parse_formula


@pytest.mark.parametrize(
    ("formula", "fixed", "groups"),
    [
        (
            "logfc ~ 1 + (1 | gene) + (1 | cell_line)",
            "1",
            [("1", ("gene",), True), ("1", ("cell_line",), True)],
        ),
        ("y ~ x + (x | g)", "x", [("x", ("g",), True)]),
        ("y ~ (x || g) + x", "x", [("x", ("g",), False)]),
        ("y ~ (1 | g)", "1", [("1", ("g",), True)]),
        ("y ~ 0 + x * c + (1 | a/b)", "0 + x * c", [("1", ("a",), True), ("1", ("a", "b"), True)]),
        ("y ~ x - 1 + (1 | a:b)", "x - 1", [("1", ("a", "b"), True)]),
        ("y ~ x", "x", []),
    ],
)
def test_split(formula: str, fixed: str, groups: list) -> None:
    parsed = parse_formula(formula)
    assert parsed.fixed == fixed
    assert [(g.expr, g.factors, g.correlated) for g in parsed.groups] == groups


def test_addition_terms_and_offset() -> None:
    parsed = parse_formula("y | se(sigma_y) ~ 1 + (1 | school)")
    assert parsed.se == "sigma_y" and parsed.trials is None
    parsed = parse_formula("k | trials(n) ~ x + offset(log_exposure)")
    assert parsed.trials == "n" and parsed.offsets == ("log_exposure",) and parsed.fixed == "x"


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        ("y + x", "'~'"),
        ("log(y) ~ x", "response"),
        ("y | weights(w) ~ x", "weights"),
        ("y ~ x + (1 | )", "grouping factor"),
        ("y ~ x + (1 | g", "unbalanced"),
    ],
)
def test_malformed_formulas_are_named(formula: str, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        parse_formula(formula)
