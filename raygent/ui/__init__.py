"""`raygent ui`: the web app (agent builder, preview chat, publish, story and portrait studios).

Nothing here imports gradio at import time: `raygent.ui.layout` does, when the app is built.

- `config`: the builder's form <-> the serve config (`raygent serve --config`) and its YAML
- `backend`: what the page needs from raygent (`Backend`), with `local` (in-process, the embedded
  model) and `remote` (a running `raygent serve`, through its URL and API key) implementations
- `builder`: the builder agent that fills the form from a conversation
- `snippets`: the curl and openai-SDK code shown after publishing
- `layout`: the gradio Blocks; `launch()` starts it
"""

from __future__ import annotations

from typing import Any


def launch(**kwargs: Any) -> Any:
    """Build and start the web app (see raygent.ui.layout.launch)."""
    from raygent.ui.layout import launch as _launch

    return _launch(**kwargs)


__all__ = ["launch"]
