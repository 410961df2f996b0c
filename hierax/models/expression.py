"""Safe parsing and evaluation of nonlinear model expressions.

``"intercept + slope * S0 * (1 - exp(-k * time))"`` is parsed with :mod:`ast`
(never ``eval``). Allowed: numbers, names, ``+ - * / **``, unary minus, calls
of whitelisted functions (and functions the user registers), and the
constant ``pi``. Names resolve to data columns or to declared parameters;
evaluation is a pure JAX function of an environment ``{name: array}``.

Every consumer of the tree (evaluation, the affinity analysis and symbolic
slopes of :mod:`hierax.inference.marginal.nonlinear`) walks it recursively, so its depth
is bounded (:data:`MAX_DEPTH`). A long sum such as ``a1*x + a2*x + ... + a900*x``
parses into a chain 900 levels deep: chains of ``+``/``-`` and of ``*``/``/`` in
a tree deeper than the bound are regrouped into balanced trees (``(positives) -
(negatives)``, ``(numerators) / (denominators)``), which have the same value and
the same affinity in every parameter, and depth ``log2`` of their length.
Anything still deeper (thousands of nested unary minuses) is a
:class:`~hierax.errors.ModelError`.
"""

from __future__ import annotations

import ast
import copy
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from hierax.errors import ModelError, close_matches

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
#: Deepest expression tree accepted (after regrouping long sums and products). Each
#: level costs the recursive walks a few Python frames, well within Python's limit.
MAX_DEPTH = 100

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


def _shown(text: str, limit: int = 120) -> str:
    """``repr`` of an expression for a message, shortened in the middle when long."""
    text = text.strip()
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit * 2 // 3]!r} ... {text[-limit // 3 :]!r} ({len(text)} characters)"


def _depth(tree: ast.AST) -> int:
    """Depth of an expression tree in expression nodes (iterative: any depth)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend(
            (child, depth + 1)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.expr)
        )
    return deepest


_CHAINS: tuple[tuple[type, type], ...] = ((ast.Add, ast.Sub), (ast.Mult, ast.Div))


def _chain(node: ast.AST) -> tuple[list[ast.expr], list[ast.expr], type, type] | None:
    """A left-deep chain ``t0 op t1 op t2 ...`` of one family as (direct, inverse) operands.

    ``a - b + c`` gives ([a, c], [b], Add, Sub); ``a / b * c`` gives ([a, c], [b], Mult,
    Div). None when ``node`` is not a chain of three or more operands.
    """
    for direct, inverse in _CHAINS:
        positive: list[ast.expr] = []
        negative: list[ast.expr] = []
        current: ast.AST = node
        while isinstance(current, ast.BinOp) and isinstance(current.op, direct | inverse):
            (positive if isinstance(current.op, direct) else negative).append(current.right)
            current = current.left
        if len(positive) + len(negative) >= 2:
            assert isinstance(current, ast.expr)
            positive.append(current)
            return positive[::-1], negative[::-1], direct, inverse
    return None


def _balanced(operands: list[ast.expr], op: type) -> ast.expr:
    """``operands[0] op operands[1] op ...`` as a balanced tree (op associative)."""
    if len(operands) == 1:
        return operands[0]
    middle = len(operands) // 2
    return ast.BinOp(_balanced(operands[:middle], op), op(), _balanced(operands[middle:], op))


def _regroup(tree: ast.expr) -> ast.expr:
    """The tree with every chain of sums or products regrouped into a balanced tree.

    Iterative (post-order with an explicit stack), so a chain of any length is
    handled; the original tree is not modified.
    """
    chains: dict[int, tuple[list[ast.expr], list[ast.expr], type, type]] = {}
    done: dict[int, ast.expr] = {}

    def parts(node: ast.AST) -> list[ast.expr]:
        if id(node) not in chains and (found := _chain(node)) is not None:
            chains[id(node)] = found
        if id(node) in chains:
            positive, negative, _, _ = chains[id(node)]
            return [*positive, *negative]
        return [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]

    stack: list[tuple[ast.expr, bool]] = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        if not ready:
            stack.append((node, True))
            stack.extend((child, False) for child in parts(node))
            continue
        if id(node) in chains:
            positive, negative, direct, inverse = chains[id(node)]
            top = _balanced([done[id(p)] for p in positive], direct)
            if negative:
                top = ast.BinOp(top, inverse(), _balanced([done[id(n)] for n in negative], direct))
            done[id(node)] = top
            continue
        rebuilt = copy.copy(node)
        for field, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(rebuilt, field, done[id(value)])
            elif isinstance(value, list):
                setattr(rebuilt, field, [done.get(id(v), v) for v in value])
        done[id(node)] = rebuilt
    return done[id(tree)]


def parse_tree(text: str, where: str = "expression") -> ast.expr:
    """``text`` parsed as one Python expression, no deeper than :data:`MAX_DEPTH`.

    Long sums and products of a deeper tree are regrouped (see the module
    docstring); a syntax error, or a tree still too deep, is a
    :class:`~hierax.errors.ModelError` naming ``where`` and the text.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        position = f" (at character {error.offset})" if error.offset else ""
        raise ModelError(
            f"cannot parse the {where} {_shown(text)}: {error.msg}{position}."
        ) from None
    except (RecursionError, MemoryError):  # the parser's own stack
        raise ModelError(
            f"the {where} {_shown(text)} is nested too deeply for Python's parser; the limit "
            f"is {MAX_DEPTH} levels. Write it with fewer nested operations (e.g. a data column "
            "or a registered function for a long repeated computation)."
        ) from None
    if _depth(tree) > MAX_DEPTH:
        tree = _regroup(tree)
        depth = _depth(tree)
        if depth > MAX_DEPTH:
            raise ModelError(
                f"the {where} {_shown(text)} is nested too deeply: {depth} levels, the limit "
                f"is {MAX_DEPTH} (long sums and products are regrouped and do not count). "
                "Write it with fewer nested operations (e.g. a data column or a registered "
                "function for a long repeated computation)."
            )
    return tree


def parse_expression(
    text: str,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    where: str = "expression",
) -> Expression:
    """Parse and validate ``text``; names are checked later by :func:`resolve_names`."""
    available = {**FUNCTIONS, **(functions or {})}
    tree = parse_tree(text, where)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise ModelError(
                    f"in the {where} {_shown(text)}: only plain function calls like exp(x) are allowed, "
                    f"not {ast.unparse(node.func)!r}."
                )
            if node.func.id not in available:
                raise ModelError(
                    f"unknown function {node.func.id!r} in the {where} {_shown(text)}; available: "
                    f"{sorted(available)}; register your own with functions={{...}}."
                    f"{close_matches(node.func.id, available)}"
                )
            if node.keywords:
                raise ModelError(
                    f"in the {where} {_shown(text)}: keyword arguments are not allowed."
                )
        elif isinstance(node, ast.Name):
            if node.id not in available and node.id not in CONSTANTS:
                names.add(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float) or isinstance(node.value, bool):
                raise ModelError(f"in the {where} {_shown(text)}: {node.value!r} is not a number.")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ModelError(
                    f"in the {where} {_shown(text)}: operator {type(node.op).__name__} is not allowed."
                )
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise ModelError(
                    f"in the {where} {_shown(text)}: only unary minus/plus are allowed."
                )
        elif isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                raise ModelError(
                    f"in the {where} {_shown(text)}: only one <, <=, > or >= per comparison."
                )
        elif isinstance(node, ast.expr_context | ast.operator | ast.unaryop | ast.cmpop):
            continue
        elif not isinstance(node, ast.Call | ast.Name | ast.Constant):
            raise ModelError(
                f"in the {where} {_shown(text)}: {ast.unparse(node)!r} is not allowed (arithmetic, "
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
            f"{both} in {_shown(expression.text)} are both data columns and parameters; rename the "
            "parameter (or the column)."
        )
    unknown = sorted(expression.names - columns - parameters)
    if unknown:
        hints = "".join(close_matches(name, columns | parameters) for name in unknown)
        raise ModelError(
            f"{unknown} in {_shown(expression.text)} are neither data columns nor declared parameters; "
            f"declare them in params={{...}} or add the column.{hints}"
        )
    return set(expression.names & columns), set(expression.names & parameters)
