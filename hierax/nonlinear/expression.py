"""Safe parsing and evaluation of nonlinear model expressions.

``"intercept + slope * S0 * (1 - exp(-k * time))"`` is parsed with :mod:`ast`
(never ``eval``). Allowed: numbers, names, ``+ - * / **``, unary minus, calls
of whitelisted functions (and functions the user registers), and the
constant ``pi``. Names resolve to data columns or to declared parameters;
evaluation is a pure JAX function of an environment ``{name: array}``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from ..errors import ModelError, close_matches

#: Functions an expression may call.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "exp": jnp.exp,
    "log": jnp.log,
    "log1p": jnp.log1p,
    "expm1": jnp.expm1,
    "sqrt": jnp.sqrt,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "tanh": jnp.tanh,
    "inv_logit": jax.nn.sigmoid,
    "logistic": jax.nn.sigmoid,
    "erf": jax.scipy.special.erf,
    "abs": jnp.abs,
    "minimum": jnp.minimum,
    "maximum": jnp.maximum,
    "where": jnp.where,
}
CONSTANTS: dict[str, float] = {"pi": float(jnp.pi)}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass(frozen=True)
class Expression:
    """A validated expression: its text, tree, and the names and functions it uses."""

    text: str
    tree: ast.expr
    names: frozenset[str]
    functions: Mapping[str, Callable[..., Any]]

    def __call__(self, env: Mapping[str, Any]) -> Any:
        """Evaluate with ``env`` mapping every name to a value (arrays broadcast)."""
        return _evaluate(self.tree, env, self.functions)


def _evaluate(
    node: ast.AST, env: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]
) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        return CONSTANTS[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](
            _evaluate(node.left, env, functions), _evaluate(node.right, env, functions)
        )
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, env, functions)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        return _COMPARE[type(node.ops[0])](
            _evaluate(node.left, env, functions), _evaluate(node.comparators[0], env, functions)
        )
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_evaluate(arg, env, functions) for arg in node.args]
        return functions[node.func.id](*args)
    raise ModelError(f"cannot evaluate {ast.unparse(node)!r}")  # pragma: no cover


def parse_expression(
    text: str,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    where: str = "expression",
) -> Expression:
    """Parse and validate ``text``; names are checked later by :func:`resolve_names`."""
    available = {**FUNCTIONS, **(functions or {})}
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ModelError(f"cannot parse the {where} {text!r}: {error.msg}.") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise ModelError(
                    f"in the {where} {text!r}: only plain function calls like exp(x) are allowed, "
                    f"not {ast.unparse(node.func)!r}."
                )
            if node.func.id not in available:
                raise ModelError(
                    f"unknown function {node.func.id!r} in the {where} {text!r}; available: "
                    f"{sorted(available)}; register your own with functions={{...}}."
                    f"{close_matches(node.func.id, available)}"
                )
            if node.keywords:
                raise ModelError(f"in the {where} {text!r}: keyword arguments are not allowed.")
        elif isinstance(node, ast.Name):
            if node.id not in available and node.id not in CONSTANTS:
                names.add(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float) or isinstance(node.value, bool):
                raise ModelError(f"in the {where} {text!r}: {node.value!r} is not a number.")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ModelError(
                    f"in the {where} {text!r}: operator {type(node.op).__name__} is not allowed."
                )
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise ModelError(f"in the {where} {text!r}: only unary minus/plus are allowed.")
        elif isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                raise ModelError(
                    f"in the {where} {text!r}: only one <, <=, > or >= per comparison."
                )
        elif isinstance(node, ast.expr_context | ast.operator | ast.unaryop | ast.cmpop):
            continue
        elif not isinstance(node, ast.Call | ast.Name | ast.Constant):
            raise ModelError(
                f"in the {where} {text!r}: {ast.unparse(node)!r} is not allowed (arithmetic, "
                "function calls, numbers and names only)."
            )
    return Expression(text=text.strip(), tree=tree, names=frozenset(names), functions=available)


def resolve_names(
    expression: Expression, columns: Iterable[str], parameters: Iterable[str]
) -> tuple[set[str], set[str]]:
    """Split the expression's names into data columns and parameters, or raise naming the culprit."""
    columns, parameters = set(columns), set(parameters)
    both = sorted(expression.names & columns & parameters)
    if both:
        raise ModelError(
            f"{both} in {expression.text!r} are both data columns and parameters; rename the "
            "parameter (or the column)."
        )
    unknown = sorted(expression.names - columns - parameters)
    if unknown:
        hints = "".join(close_matches(name, columns | parameters) for name in unknown)
        raise ModelError(
            f"{unknown} in {expression.text!r} are neither data columns nor declared parameters; "
            f"declare them in params={{...}} or add the column.{hints}"
        )
    return set(expression.names & columns), set(expression.names & parameters)
