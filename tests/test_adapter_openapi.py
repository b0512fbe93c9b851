"""OpenAPI adapter against a real FastAPI app served by uvicorn on 127.0.0.1, using its own /openapi.json."""

from __future__ import annotations

import io
import json

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from _local_servers import free_port, serve_asgi
from raygent.toolhub.adapters.openapi import (
    OpenAPIAuth,
    load_openapi_spec,
    openapi_tools,
    openapi_tools_from_spec,
    resolve_refs,
)
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.base import ToolOutput
from raygent.toolhub.errors import ToolError
from raygent.toolhub.registry import ToolRegistry


class Address(BaseModel):
    city: str
    street: str | None = None


class Pet(BaseModel):
    name: str
    age: int
    tags: list[str] = []
    home: Address | None = None


def make_app() -> FastAPI:
    app = FastAPI(title="pets")
    pets: dict[int, dict] = {1: {"id": 1, "name": "rex", "age": 3, "tags": ["dog"], "home": None}}
    bearer = HTTPBearer()
    api_key = APIKeyHeader(name="X-Pet-Key")

    @app.get("/pets/{pet_id}", operation_id="get_pet", summary="Get a pet by id")
    def get_pet(pet_id: int, verbose: bool = False, x_trace: str | None = Header(default=None)):
        if pet_id not in pets:
            raise HTTPException(status_code=404, detail=f"no pet {pet_id}")
        out = dict(pets[pet_id])
        if verbose:
            out["trace"] = x_trace
        return out

    @app.get("/pets", operation_id="list_pets")
    def list_pets(limit: int = 10, tag: str | None = None):
        found = [p for p in pets.values() if tag is None or tag in p["tags"]]
        return found[:limit]

    @app.post("/pets", operation_id="create_pet", summary="Create a pet")
    def create_pet(pet: Pet, creds: HTTPAuthorizationCredentials = Depends(bearer)):
        if creds.credentials != "s3cret":
            raise HTTPException(status_code=403, detail="bad token")
        new_id = max(pets) + 1
        pets[new_id] = {"id": new_id, **pet.model_dump()}
        return pets[new_id]

    @app.delete("/pets/{pet_id}", operation_id="delete_pet")
    def delete_pet(pet_id: int, key: str = Depends(api_key)):
        if key != "k-123":
            raise HTTPException(status_code=401, detail="bad api key")
        pets.pop(pet_id, None)
        return Response(status_code=204)

    @app.get("/pets/{pet_id}/photo", operation_id="pet_photo", response_class=Response)
    def pet_photo(pet_id: int):
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (7, 5), (200, 10, 10)).save(buf, format="PNG")
        return Response(content=buf.getvalue(), media_type="image/png")

    return app


@pytest.fixture(scope="module")
def pet_server():
    with serve_asgi(make_app()) as url:
        yield url


async def test_spec_from_url_gives_one_tool_per_operation_with_resolved_schemas(pet_server):
    tools = await openapi_tools(pet_server + "/openapi.json")
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"get_pet", "list_pets", "create_pet", "delete_pet", "pet_photo"}
    get_schema = by_name["get_pet"].spec.parameters
    assert get_schema["required"] == ["pet_id"]
    assert get_schema["properties"]["pet_id"]["type"] == "integer"
    assert get_schema["properties"]["verbose"]["type"] == "boolean"
    assert "x-trace" in get_schema["properties"]  # header parameter
    assert by_name["get_pet"].description == "Get a pet by id"
    create = by_name["create_pet"].spec.parameters
    assert "$ref" not in json.dumps(create)  # Pet and its nested Address are inlined
    assert set(create["properties"]) == {"name", "age", "tags", "home"}
    assert set(create["required"]) == {"name", "age"}
    home = create["properties"]["home"]["anyOf"][0]
    assert home["properties"]["city"]["type"] == "string"


async def test_calls_fill_path_query_header_and_body(pet_server):
    tools = {t.name: t for t in await openapi_tools(pet_server + "/openapi.json",
                                                    auth=OpenAPIAuth(kind="bearer", token="s3cret"))}
    pet = await tools["get_pet"].call(pet_id=1, verbose=True, **{"x-trace": "abc"})
    assert pet["name"] == "rex" and pet["trace"] == "abc"
    created = await tools["create_pet"].call(name="tom", age=2, tags=["cat"], home={"city": "Hangzhou"})
    assert created["name"] == "tom" and created["home"]["city"] == "Hangzhou" and created["id"] >= 2
    cats = await tools["list_pets"].call(tag="cat")
    assert [p["name"] for p in cats] == ["tom"]


async def test_http_errors_become_clear_tool_errors(pet_server):
    tools = {t.name: t for t in await openapi_tools(pet_server + "/openapi.json")}
    with pytest.raises(ToolError, match=r"GET .*/pets/99 returned HTTP 404 Not Found: \"no pet 99\""):
        await tools["get_pet"].call(pet_id=99)
    with pytest.raises(ToolError, match="HTTP 401"):  # no bearer token configured
        await tools["create_pet"].call(name="x", age=1)
    wrong = {t.name: t for t in await openapi_tools(pet_server + "/openapi.json",
                                                    auth=OpenAPIAuth(kind="bearer", token="nope"))}
    with pytest.raises(ToolError, match="HTTP 422 Unprocessable.*age"):  # FastAPI's own body validation
        await wrong["create_pet"].call(name="x", age="not a number")
    with pytest.raises(ToolError, match="HTTP 403 Forbidden: \"bad token\""):
        await wrong["create_pet"].call(name="x", age=1)


async def test_api_key_auth_takes_its_header_name_from_the_spec(pet_server):
    tools = {t.name: t for t in await openapi_tools(pet_server + "/openapi.json",
                                                    auth=OpenAPIAuth(kind="api_key", token="k-123"))}
    assert tools["delete_pet"].auth.name == "X-Pet-Key" and tools["delete_pet"].auth.location == "header"
    assert await tools["delete_pet"].call(pet_id=1) == {"status": 204}
    with pytest.raises(ToolError, match="no pet 1"):
        await tools["get_pet"].call(pet_id=1)


async def test_binary_responses_become_artifacts(pet_server, tmp_path):
    tools = {t.name: t for t in await openapi_tools(pet_server + "/openapi.json",
                                                    artifact_store=ArtifactStore(tmp_path))}
    out = await tools["pet_photo"].call(pet_id=1)
    assert isinstance(out, ToolOutput)
    (art,) = out.artifacts
    assert art.kind == "image" and art.mime_type == "image/png"
    assert art.metadata == {"width": 7, "height": 5}


async def test_registry_validates_and_reports_errors(pet_server):
    registry = ToolRegistry(await openapi_tools(pet_server + "/openapi.json", operations=["get_pet", "list_pets"]))
    assert len(registry) == 2
    bad = await registry.call("get_pet", {"pet_id": "one"})
    assert bad.error and "invalid arguments" in bad.error
    missing = await registry.call("get_pet", {"pet_id": 42})
    assert missing.error and "HTTP 404" in missing.error and "no pet 42" in missing.error
    ok = await registry.call("list_pets", {"limit": 1})
    assert ok.ok and len(ok.output) == 1


async def test_spec_from_file_needs_a_base_url(pet_server, tmp_path):
    import httpx

    spec_file = tmp_path / "pets.json"
    spec_file.write_text(httpx.get(pet_server + "/openapi.json").text)
    with pytest.raises(ValueError, match="pass base_url"):
        openapi_tools_from_spec(spec_file)
    tools = openapi_tools_from_spec(spec_file, base_url=pet_server, operations=["list_pets"])
    assert [t.name for t in tools] == ["list_pets"]
    assert isinstance(await tools[0].call(), list)
    with pytest.raises(ValueError, match="operations not in the spec"):
        openapi_tools_from_spec(spec_file, base_url=pet_server, operations=["nope"])


async def test_unreachable_server_and_bad_specs():
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "servers": [{"url": f"http://127.0.0.1:{free_port()}"}],
            "paths": {"/ping": {"get": {}}}}
    (ping,) = openapi_tools_from_spec(spec)
    assert ping.name == "get_ping"
    with pytest.raises(ToolError, match="GET http://127.0.0.1:.*/ping failed: ConnectError"):
        await ping.call()
    with pytest.raises(ValueError, match="not an OpenAPI 3 document"):
        load_openapi_spec({"swagger": "2.0"})
    recursive = {"components": {"schemas": {"Node": {"type": "object", "properties": {
        "child": {"$ref": "#/components/schemas/Node"}}}}}}
    node = resolve_refs({"$ref": "#/components/schemas/Node"}, recursive)
    assert node["properties"]["child"]["type"] == "object" and "recursive" in node["properties"]["child"]["description"]


def test_spec_text_yaml_and_missing_file(tmp_path):
    yaml_text = ("openapi: 3.0.3\ninfo: {title: t, version: '1'}\nservers: [{url: 'http://127.0.0.1:9/api'}]\n"
                 "paths:\n  /items/{id}:\n    parameters:\n      - {name: id, in: path, required: true, "
                 "schema: {type: integer}}\n    get:\n      operationId: get_item\n")
    (tool,) = openapi_tools_from_spec(yaml_text)
    assert tool.name == "get_item" and tool.base_url == "http://127.0.0.1:9/api"
    assert tool.spec.parameters == {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
    assert tool._request_parts({"id": 7})[0] == "http://127.0.0.1:9/api/items/7"
    with pytest.raises(FileNotFoundError, match="OpenAPI spec file not found"):
        load_openapi_spec(tmp_path / "nope.json")
