"""Splitting an lme4/brms formula into the parts ``formulae`` parses.

``formulae`` parses the fixed-effects part and each group term's expression;
what it does not know is handled here: brms response addition terms
(``y | se(sd_y)``, ``y | trials(n)``), uncorrelated group terms ``(x || g)``,
keeping a correlated term ``(x | g)`` together as one block, nesting
``(1 | a/b)`` and ``offset(...)``. Only the bars and parentheses are scanned by
hand; every expression is checked with ``formulae``'s own scanner and parser,
so that a syntax error is reported once, as a :class:`ModelError` that quotes
the formula and points at the character where reading stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import formulae as fm
from formulae.parser import ParseError, Parser
from formulae.scanner import ScanError, Scanner

from hierax.errors import ModelError


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
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
#: Formula text longer than this is refused before parsing (the parsers recurse).
MAX_FORMULA_LENGTH = 20_000


def formula_error(formula: str, position: int, problem: str) -> ModelError:
    """A :class:`ModelError` quoting ``formula`` with a caret under ``position`` (0-based)."""
    position = max(0, min(position, len(formula)))
    return ModelError(
        f"cannot read formula {formula!r} at character {position + 1}: {problem}\n"
        f"    {formula}\n    {' ' * position}^"
    )


class _PositionScanner(Scanner):  # type: ignore[misc]
    """formulae's scanner, remembering where each token starts (its tokens do not)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.positions: list[int] = []

    def add_token(self, kind: str, literal: Any = None) -> None:
        self.positions.append(self.start)
        super().add_token(kind, literal)


def check_expression(text: str, start: int, formula: str) -> None:
    """Check one formula expression with formulae's scanner, parser and resolver.

    ``text`` is a piece of ``formula`` (a fixed term or a group term's
    expression) that begins at character ``start``; any error is raised as a
    :class:`ModelError` pointing at the offending character.
    """
    scanner = _PositionScanner(text)
    try:
        tokens = scanner.scan(add_intercept=False)
    except ScanError as error:
        raise formula_error(formula, start + scanner.start, f"{error}.") from None
    positions = [*scanner.positions, len(text)]  # the last token is EOF
    parser = Parser(tokens)
    try:
        parser.parse()
        message = None if parser.at_end() else ""
    except ParseError as error:
        message = str(error)
    except RecursionError:
        raise formula_error(formula, start, "the expression is nested too deeply.") from None
    if message is not None:
        index = min(parser.current, len(tokens) - 1)
        token = tokens[index]
        if token.kind == "EOF":
            problem = "the formula ends where a term or a closing bracket is expected"
        else:
            problem = f"unexpected {token.lexeme!r}"
        if message and not message.startswith("Don't know how to parse"):
            problem += f" ({message.rstrip('.')})"
        raise formula_error(formula, start + positions[index], problem + ".")
    try:
        fm.model_description(text)
    except RecursionError:
        raise formula_error(formula, start, "the expression is nested too deeply.") from None
    except Exception as error:  # formulae's resolver raises TypeError, AttributeError, ...
        detail = " ".join(str(error).split()) or type(error).__name__
        raise formula_error(formula, start, f"formulae cannot use {text!r}: {detail}") from None


def _split_top_level(text: str, separator: str) -> list[tuple[str, int]]:
    """Split at ``separator`` outside parentheses: ``[(piece, start), ...]``."""
    parts: list[tuple[str, int]] = []
    begin = 0
    depth = 0
    for position, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append((text[begin:position], begin))
            begin = position + 1
    parts.append((text[begin:], begin))
    return parts


def _matching_paren(text: str, start: int, formula: str, offset: int) -> int:
    depth = 0
    for position in range(start, len(text)):
        if text[position] == "(":
            depth += 1
        elif text[position] == ")":
            depth -= 1
            if depth == 0:
                return position
    raise formula_error(
        formula, offset + start, "unbalanced parentheses: this '(' is never closed."
    )


def _leading_spaces(text: str) -> int:
    return len(text) - len(text.lstrip())


def _group_factors(factor: str, start: int, formula: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> a, a:b, a:b:c; ``a:b`` -> one interaction; each name a column name."""
    position = start + _leading_spaces(factor)
    factor = factor.strip()
    if not factor:
        raise formula_error(
            formula, position, "a group term has no grouping factor after '|'; write (1 | g)."
        )
    names = re.split(r"\s*[/:]\s*", factor)
    for name in names:
        if not _NAME.fullmatch(name):
            raise formula_error(
                formula,
                position,
                f"the grouping factor {factor!r} must be a column name, or names joined by "
                "':' (interaction) or '/' (nesting), e.g. (1 | a:b) or (1 | a/b).",
            )
    if "/" in factor:  # a/b/c -> a, a:b, a:b:c
        parts = [n for n in re.split(r"\s*/\s*", factor)]
        return [tuple(":".join(parts[: i + 1]).split(":")) for i in range(len(parts))]
    return [tuple(names)]


def _response(lhs: str, formula: str) -> tuple[str, str | None, str | None]:
    """The response column and its se() or trials() column."""
    lhs_parts = [p.strip() for p in lhs.split("|")]
    response = lhs_parts[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", response):
        raise ModelError(
            f"the response {response!r} in {formula!r} must be a column name (transform it in "
            "the table first)."
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
    return response, se, trials


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, addition terms, fixed part and group terms.

    Raises
    ------
    ModelError
        For any syntax error, quoting the formula and pointing at the character
        where it was found (e.g. ``y ~ x +``, ``y ~ x **``, ``(|g)``, unbalanced
        parentheses, a group term without parentheses).
    """
    if not isinstance(formula, str):
        raise ModelError(
            f"a formula must be a string such as 'y ~ 1 + x', got {type(formula).__name__}."
        )
    if "~" not in formula:
        raise formula_error(
            formula,
            len(formula),
            "a formula needs a response and '~', e.g. 'y ~ 1 + x'.",
        )
    if len(formula) > MAX_FORMULA_LENGTH:
        raise ModelError(
            f"the formula is {len(formula)} characters long (at most {MAX_FORMULA_LENGTH}); "
            "build such a model with a NumPyro model function instead."
        )
    tilde = formula.index("~")
    lhs, rhs = formula[:tilde], formula[tilde + 1 :]
    if "~" in rhs:
        raise formula_error(formula, tilde + 1 + rhs.index("~"), "a formula has one '~'.")
    response, se, trials = _response(lhs, formula)
    base = tilde + 1  # position of rhs[0] in the formula
    if not rhs.strip():
        raise formula_error(
            formula, len(formula), "nothing after '~'; write 'y ~ 1' for an intercept-only model."
        )

    groups: list[GroupTerm] = []
    offsets: list[str] = []
    # rhs with group terms and offsets masked (same length, so positions are kept)
    masked: list[str] = []
    position = 0
    depth = 0
    while position < len(rhs):
        char = rhs[position]
        offset_match = re.match(r"offset\s*\(", rhs[position:])
        if offset_match and (
            position == 0 or not (rhs[position - 1].isalnum() or rhs[position - 1] in "_.")
        ):
            opening = position + offset_match.end() - 1
            end = _matching_paren(rhs, opening, formula, base)
            name = rhs[opening + 1 : end].strip()
            if not _NAME.fullmatch(name):
                raise formula_error(
                    formula,
                    base + opening + 1,
                    f"offset() takes a column name, got {name!r}; compute it as a column of "
                    "the table first.",
                )
            offsets.append(name)
            masked += [_REMOVED] + [" "] * (end - position)
            position = end + 1
            continue
        if char == "(":
            end = _matching_paren(rhs, position, formula, base)
            inner = rhs[position + 1 : end]
            pieces = _split_top_level(inner, "|")
            if len(pieces) > 1:
                correlated = True
                if len(pieces) == 3 and pieces[1][0] == "":  # "||"
                    correlated = False
                    pieces = [pieces[0], pieces[2]]
                if len(pieces) != 2:
                    raise formula_error(
                        formula,
                        base + position,
                        f"cannot read the group term ({inner}); write (x | g) or (x || g).",
                    )
                (expr_text, _), (factor_text, factor_start) = pieces
                expr_start = base + position + 1 + _leading_spaces(expr_text)
                expr = expr_text.strip()
                if not expr:
                    raise formula_error(
                        formula,
                        expr_start,
                        "a group term has nothing before '|'; write (1 | g) for a varying "
                        "intercept.",
                    )
                if expr not in ("0", "1"):
                    check_expression(expr, expr_start, formula)
                for factors in _group_factors(
                    factor_text, base + position + 1 + factor_start, formula
                ):
                    groups.append(GroupTerm(expr=expr, factors=factors, correlated=correlated))
                masked += [_REMOVED] + [" "] * (end - position)
                position = end + 1
                continue
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise formula_error(
                    formula,
                    base + position,
                    "unbalanced parentheses: this ')' has no matching '('.",
                )
        elif char == "|" and depth == 0:
            raise formula_error(
                formula,
                base + position,
                "a group term needs parentheses, e.g. 'y ~ x + (1 | g)'.",
            )
        masked.append(char)
        position += 1

    text = "".join(masked)
    chunks = _split_top_level(text, "+")
    remaining: list[str] = []
    for number, (chunk, start) in enumerate(chunks):
        stripped = chunk.strip()
        where = base + start + _leading_spaces(chunk)
        if not stripped:
            if number == len(chunks) - 1:
                raise formula_error(formula, base + start - 1, "nothing after '+'.")
            raise formula_error(formula, where, "an empty term: nothing before this '+'.")
        if stripped == _REMOVED:
            continue
        if _REMOVED in stripped:
            at = base + text.index(_REMOVED, start)
            raise formula_error(
                formula,
                at,
                "group terms and offsets must be added with '+', e.g. 'y ~ x + (1 | g)'.",
            )
        check_expression(stripped, where, formula)
        remaining.append(stripped)
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
