"""Publish: what `raygent serve --config` and `raygent keys create` do, for the builder's config.

The config (models and the agent) becomes the Serve application `raygent` (replacing a previous
publish), and a new API key is made in the server's key store, after which the server asks every
request for a key (`security.require_keys: auto`)."""

from __future__ import annotations

import asyncio

from raygent.serve.app import ServeConfig
from raygent.ui.backend import PublishInfo


async def publish_local(config: ServeConfig, agent: str, *, host: str = "127.0.0.1", port: int = 8000,
                        key_name: str | None = None) -> PublishInfo:
    from raygent.serve import app
    from raygent.serve.keys import open_key_store

    if agent not in config.agents:
        raise ValueError(f"no agent {agent!r} in the config; agents: {sorted(config.agents)}")
    # the models the agents run on (a pool the config lists but no agent uses is not started)
    used = {config.agent_model(name) for name in config.agents}
    if config.default_model:
        used.add(config.default_model)
    config = config.model_copy(update={"default_agent": agent,
                                       "models": {n: e for n, e in config.models.items() if n in used}})
    app.check_tools(config)
    url = await asyncio.to_thread(app.start, config, host=host, port=port)  # raygent serve
    store = open_key_store(config.state.url)  # raygent keys create
    try:
        created = await store.create(name=key_name or f"raygent-ui:{agent}")
    finally:
        await store.close()
    state = f" --state {config.state.url}" if config.state.url and not config.state.url.startswith("sqlite") else ""
    return PublishInfo(url=url, agent=agent, key=created.key, key_id=created.id,
                       note=f"serving {', '.join(sorted(config.agents))} at {url}; key {created.id} "
                            f"(revoke with `raygent keys revoke {created.id}{state}`)")


__all__ = ["publish_local"]
