"""Adapters that turn other tool worlds into raygent Tools: OpenAPI specs, MCP servers, LangChain.

Each lives in its own module and imports its SDK only when used:
`raygent.toolhub.adapters.openapi`, `.mcp`, `.langchain` (extra: `pip install raygent[adapters]`).
"""
