"""Affinity of a nonlinear expression in a set of parameters, decided on its tree.

A gaussian nonlinear model's mean is affine in a set of parameters S given the
others when::

    mean = A + sum_{p in S} B_p * p        (elementwise over rows, A and B_p free of S)

:func:`affine_degree` decides it on the expression tree, never numerically;
:func:`slope_tree` gives each ``B_p`` as a symbolic derivative (a tree free of
S, built once), and :func:`free_tree` gives ``A``: the expression at S = 0 with
its vanishing terms removed (the binary stars' ``a * cos(w) + b * sin(w) + v0``
has none left, so no row computes a cosine only to multiply it by zero).
"""

from __future__ import annotations

import ast

__all__ = ["AFFINE", "CONSTANT", "NONLINEAR", "affine_degree", "free_tree", "slope_tree"]

#: Degrees of a subexpression in the marginalized parameters.
CONSTANT, AFFINE, NONLINEAR = 0, 1, 2


def affine_degree(node: ast.AST, marginal: frozenset[str] | set[str]) -> int:
    """Degree of an expression tree in the names ``marginal``.

    Returns 0 (free of them), 1 (affine in them jointly) or 2 (anything else).
    Conservative: a call of any function other than ``where`` on a marginalized
    parameter, a comparison, a division by one or a power of one is nonlinear.
    """
    if isinstance(node, ast.Constant):
        return CONSTANT
    if isinstance(node, ast.Name):
        return AFFINE if node.id in marginal else CONSTANT
    if isinstance(node, ast.UnaryOp):
        return affine_degree(node.operand, marginal)
    if isinstance(node, ast.BinOp):
        left, right = affine_degree(node.left, marginal), affine_degree(node.right, marginal)
        if isinstance(node.op, ast.Add | ast.Sub):
            return max(left, right)
        if isinstance(node.op, ast.Mult):
            return min(left + right, NONLINEAR)
        if isinstance(node.op, ast.Div):
            return left if right == CONSTANT else NONLINEAR
        if isinstance(node.op, ast.Pow):
            if left == CONSTANT and right == CONSTANT:
                return CONSTANT
            exponent = node.right
            if right == CONSTANT and isinstance(exponent, ast.Constant) and exponent.value == 1:
                return left
            return NONLINEAR
        return NONLINEAR
    if isinstance(node, ast.Call):
        args = [affine_degree(a, marginal) for a in node.args]
        if all(a == CONSTANT for a in args):
            return CONSTANT
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        if name == "where" and len(args) == 3 and args[0] == CONSTANT:
            return max(args[1:])
        return NONLINEAR
    if isinstance(node, ast.Compare):
        parts = [node.left, *node.comparators]
        return CONSTANT if all(affine_degree(p, marginal) == CONSTANT for p in parts) else NONLINEAR
    return NONLINEAR


def _sum(left: ast.expr | None, op: ast.operator, right: ast.expr | None) -> ast.expr | None:
    """``left op right`` for ``op`` in (+, -), with None standing for zero."""
    if right is None:
        return left
    if left is None:
        return right if isinstance(op, ast.Add) else ast.UnaryOp(ast.USub(), right)
    return ast.BinOp(left, op, right)


def _where(node: ast.Call, branches: list[ast.expr | None]) -> ast.expr | None:
    """``where(condition, x, y)`` with new branches (None: zero; both None: None)."""
    if all(b is None for b in branches):
        return None
    return ast.Call(
        node.func,
        [node.args[0], *(ast.Constant(0.0) if b is None else b for b in branches)],
        [],
    )


def slope_tree(node: ast.expr, name: str, marginal: frozenset[str] | set[str]) -> ast.expr | None:
    """The derivative of an affine expression tree with respect to ``name``, as a tree.

    ``node`` must be affine in ``marginal`` (:func:`affine_degree` <= 1) and
    ``name`` one of them; the result is free of ``marginal`` (None means zero).
    Symbolic, so the coefficient of each marginalized parameter costs one plain
    evaluation and shares its subexpressions (``cos(2 * pi * t / exp(lnP))``)
    with the others under ``jit``.
    """
    if isinstance(node, ast.Name):
        return ast.Constant(1.0) if node.id == name else None
    if isinstance(node, ast.UnaryOp):
        inner = slope_tree(node.operand, name, marginal)
        if inner is None or isinstance(node.op, ast.UAdd):
            return inner
        return ast.UnaryOp(ast.USub(), inner)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            left, right = (slope_tree(n, name, marginal) for n in (node.left, node.right))
            return _sum(left, node.op, right)
        if isinstance(node.op, ast.Mult):
            if affine_degree(node.left, marginal) == CONSTANT:
                right = slope_tree(node.right, name, marginal)
                return None if right is None else ast.BinOp(node.left, ast.Mult(), right)
            left = slope_tree(node.left, name, marginal)
            return None if left is None else ast.BinOp(left, ast.Mult(), node.right)
        if isinstance(node.op, ast.Div):
            left = slope_tree(node.left, name, marginal)
            return None if left is None else ast.BinOp(left, ast.Div(), node.right)
        if isinstance(node.op, ast.Pow) and affine_degree(node, marginal) != CONSTANT:
            return slope_tree(node.left, name, marginal)  # p ** 1
        return None
    if isinstance(node, ast.Call) and affine_degree(node, marginal) != CONSTANT:
        # where(condition, x, y) with a condition free of the marginalized parameters
        return _where(node, [slope_tree(n, name, marginal) for n in node.args[1:]])
    return None


def free_tree(node: ast.expr, marginal: frozenset[str] | set[str]) -> ast.expr | None:
    """An affine expression tree at ``marginal = 0``, with the vanishing terms removed.

    ``a * cos(w) + b * sin(w) + v0`` at ``a = b = v0 = 0`` is 0 (None), not
    ``0 * cos(w) + 0 * sin(w) + 0``, which would cost a cosine and a sine per row
    (XLA cannot drop ``0 * x``: x may be infinite). ``node`` must be affine in
    ``marginal`` (:func:`affine_degree` <= 1).
    """
    if affine_degree(node, marginal) == CONSTANT:
        return node
    if isinstance(node, ast.Name):
        return None  # a marginalized parameter
    if isinstance(node, ast.UnaryOp):
        inner = free_tree(node.operand, marginal)
        return None if inner is None else ast.UnaryOp(node.op, inner)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            left, right = (free_tree(n, marginal) for n in (node.left, node.right))
            return _sum(left, node.op, right)
        if isinstance(node.op, ast.Mult):
            left, right = (free_tree(n, marginal) for n in (node.left, node.right))
            return None if left is None or right is None else ast.BinOp(left, node.op, right)
        if isinstance(node.op, ast.Div):
            left = free_tree(node.left, marginal)
            return None if left is None else ast.BinOp(left, node.op, node.right)
        if isinstance(node.op, ast.Pow):
            return free_tree(node.left, marginal)  # p ** 1
    if isinstance(node, ast.Call):
        # where(condition, x, y) with a condition free of the marginalized parameters
        return _where(node, [free_tree(n, marginal) for n in node.args[1:]])
    return node  # pragma: no cover (affine_degree admits nothing else)
