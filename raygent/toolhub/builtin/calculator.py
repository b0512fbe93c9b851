"""Exact arithmetic without eval: the expression is parsed with `ast` and only numbers and
arithmetic operators are evaluated, with limits against huge powers."""

from __future__ import annotations

import ast
import math
import operator
from fractions import Fraction

from raygent.schema import ToolExample
from raygent.toolhub.base import Tool

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "log": math.log, "sin": math.sin, "cos": math.cos,
          "tan": math.tan, "exp": math.exp, "floor": math.floor, "ceil": math.ceil}
_CONSTS = {"pi": math.pi, "e": math.e}
_NORMALISE = str.maketrans({"×": "*", "÷": "/", "（": "(", "）": ")", "＋": "+", "－": "-", "−": "-", "^": "**", "，": ","})


MAX_RESULT_DIGITS = 1000  # an integer result longer than this is refused (it would flood the context)
_MAX_RESULT_BITS = int(MAX_RESULT_DIGITS * math.log2(10)) + 1


class CalculatorError(ValueError):
    pass


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e12):
            raise CalculatorError("exponent too large")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise CalculatorError("division by zero")
        if isinstance(node.op, ast.Div) and isinstance(left, int) and isinstance(right, int):
            frac = Fraction(left, right)
            return int(frac) if frac.denominator == 1 else float(frac)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*(_eval(a) for a in node.args))
    raise CalculatorError(f"unsupported element in expression: {ast.dump(node)[:80]}")


def calculate(expression: str) -> float | int:
    text = expression.translate(_NORMALISE).strip().rstrip("=").strip()
    if len(text) > 500:
        raise CalculatorError("expression longer than 500 characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from exc
    value = _eval(tree)
    _check_size(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def _check_size(value: float | int) -> None:
    """Refuse an integer result too long to show: 999999999999**1000 has 12000 digits, which is no
    answer to give a model, and past 4300 digits Python cannot even turn it into text (the JSON of
    the result would raise)."""
    if isinstance(value, int) and value.bit_length() > _MAX_RESULT_BITS:
        digits = int(value.bit_length() * math.log10(2)) + 1
        raise CalculatorError(f"the result has about {digits} digits, more than the {MAX_RESULT_DIGITS} the "
                              f"calculator returns; ask for its logarithm (log(x, 10)) instead")


class CalculatorTool(Tool):
    name = "calculator"
    description = "Evaluate an arithmetic expression exactly (+ - * / // % ** sqrt log sin cos pi e). 计算器。"
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "arithmetic expression, e.g. (12+8)/5"}},
        "required": ["expression"],
    }
    domain = "math"
    timeout_s = 5.0
    idempotent = True  # no effects: a hub that crashed mid-call runs it again
    examples = [ToolExample(query="How much is (12+8)/5?", arguments={"expression": "(12+8)/5"})]

    async def call(self, expression: str) -> dict[str, float | int | str]:
        return {"expression": expression, "result": calculate(expression)}
