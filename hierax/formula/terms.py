"""Splitting an lme4/brms formula into the parts ``formulae`` parses.

``formulae`` parses the fixed-effects part and each group term's expression;
what it does not know is handled here: brms response addition terms
(``y | se(sd_y)``, ``y | trials(n)``), uncorrelated group terms ``(x || g)``,
keeping a correlated term ``(x | g)`` together as one block, nesting
``(1 | a/b)`` and ``offset(...)``. Only the bars and parentheses are scanned by
hand; every expression is left to ``formulae``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ModelError


@dataclass(frozen=True)
class GroupTerm:
    """One parenthesised group term ``(expr | factor)``; nesting already expanded."""

    expr: str
    factors: tuple[str, ...]  # ("a",) or ("a", "b") for the interaction a:b
    correlated: bool

    @property
    def name(self) -> str:
        return "_".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    """The parts of a formula."""

    response: str
    fixed: str
    groups: tuple[GroupTerm, ...] = ()
    se: str | None = None
    trials: str | None = None
    offsets: tuple[str, ...] = field(default_factory=tuple)
    text: str = ""


_REMOVED = "\u00a7"
_ADDITION = re.compile(r"^(se|trials)\((\s*[A-Za-z_][A-Za-z0-9_.]*\s*)\)$")


def _split_top_level(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _matching_paren(text: str, start: int, formula: str) -> int:
    depth = 0
    for position in range(start, len(text)):
        if text[position] == "(":
            depth += 1
        elif text[position] == ")":
            depth -= 1
            if depth == 0:
                return position
    raise ModelError(f"unbalanced parentheses in formula {formula!r}.")


def _group_factors(factor: str, formula: str) -> list[tuple[str, ...]]:
    factor = factor.replace(" ", "")
    if not factor:
        raise ModelError(f"a group term in {formula!r} has no grouping factor after '|'.")
    if "/" in factor:  # a/b/c -> a, a:b, a:b:c
        names = factor.split("/")
        return [tuple(names[: i + 1]) for i in range(len(names))]
    return [tuple(factor.split(":"))]


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, addition terms, fixed part and group terms."""
    if not isinstance(formula, str) or "~" not in formula:
        raise ModelError(f"a formula needs a response and '~', e.g. 'y ~ 1 + x'; got {formula!r}.")
    lhs, rhs = formula.split("~", 1)
    lhs_parts = [p.strip() for p in lhs.split("|")]
    response = lhs_parts[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", response):
        raise ModelError(
            f"the response {response!r} must be a column name (transform it in the table first)."
        )
    se = trials = None
    if len(lhs_parts) > 2:
        raise ModelError(f"use one addition term after '|' in {lhs.strip()!r}.")
    if len(lhs_parts) == 2:
        match = _ADDITION.match(lhs_parts[1].replace(" ", ""))
        if not match:
            raise ModelError(
                f"unknown response addition term {lhs_parts[1]!r}; use se(column) for known "
                "standard errors or trials(column) for binomial trials."
            )
        if match.group(1) == "se":
            se = match.group(2).strip()
        else:
            trials = match.group(2).strip()

    groups: list[GroupTerm] = []
    offsets: list[str] = []
    kept: list[str] = []
    position = 0
    text = rhs
    while position < len(text):
        char = text[position]
        offset_match = re.match(r"offset\s*\(", text[position:])
        if offset_match and (
            position == 0 or not (text[position - 1].isalnum() or text[position - 1] == "_")
        ):
            end = _matching_paren(text, position + offset_match.end() - 1, formula)
            offsets.append(text[position + offset_match.end() : end].strip())
            kept.append(_REMOVED)
            position = end + 1
            continue
        if char == "(":
            end = _matching_paren(text, position, formula)
            inner = text[position + 1 : end]
            pieces = _split_top_level(inner, "|")
            if len(pieces) > 1:
                correlated = True
                if len(pieces) == 3 and pieces[1] == "":  # "||"
                    correlated = False
                    pieces = [pieces[0], pieces[2]]
                if len(pieces) != 2:
                    raise ModelError(f"cannot read the group term ({inner}) in {formula!r}.")
                expr = pieces[0].strip()
                for factors in _group_factors(pieces[1], formula):
                    groups.append(GroupTerm(expr=expr, factors=factors, correlated=correlated))
                kept.append(_REMOVED)
                position = end + 1
                continue
        kept.append(char)
        position += 1
    chunks = [c.strip() for c in _split_top_level("".join(kept), "+")]
    remaining = [c for c in chunks if c and c != _REMOVED]
    if any(_REMOVED in c for c in remaining):
        raise ModelError(
            f"group terms and offsets must be added with '+' in {formula!r}, e.g. "
            "'y ~ x + (1 | g)'."
        )
    fixed = " + ".join(remaining) or "1"
    return ParsedFormula(
        response=response,
        fixed=fixed,
        groups=tuple(groups),
        se=se,
        trials=trials,
        offsets=tuple(offsets),
        text=formula,
    )
