"""Starter tools that work offline."""

from raygent.toolhub.base import Tool
from raygent.toolhub.builtin.address import AddressParseTool, parse_address
from raygent.toolhub.builtin.calculator import CalculatorTool, calculate
from raygent.toolhub.builtin.clock import CurrentDatetimeTool

BUILTIN_TOOLS: dict[str, type[Tool]] = {
    "address_parse": AddressParseTool,
    "calculator": CalculatorTool,
    "current_datetime": CurrentDatetimeTool,
}


def default_tools() -> list[Tool]:
    return [cls() for cls in BUILTIN_TOOLS.values()]


__all__ = ["AddressParseTool", "CalculatorTool", "CurrentDatetimeTool", "BUILTIN_TOOLS", "default_tools",
           "parse_address", "calculate"]
