"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import TYPE_CHECKING

import openai
import pytest

from conftest import CONFIG_MODELS
from helpers import assert_openai_error

if TYPE_CHECKING:
    from conftest import Gateway


def _listed(ids: list[str], model: str) -> bool:
    return model in ids or f"mock/{model}" in ids


def test_models_list(config_client: openai.OpenAI) -> None:
    ids = [m.id for m in config_client.models.list()]
    missing = [m for m in CONFIG_MODELS if not _listed(ids, m)]
    assert not missing, f"declared models missing from /v1/models: {missing}; listed: {ids}"
    assert len(ids) == len(set(ids)), f"duplicate ids in /v1/models: {ids}"


def test_models_list_shape(config_gateway: "Gateway") -> None:
    with config_gateway.http() as http:
        r = http.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert isinstance(body["data"], list) and body["data"]
    for m in body["data"]:
        assert isinstance(m["id"], str) and m["id"]
        assert m["object"] == "model"
        assert isinstance(m["created"], int)
        assert isinstance(m["owned_by"], str)


def test_models_retrieve_known(config_client: openai.OpenAI) -> None:
    m = config_client.models.retrieve("mock-model")
    assert m.id in ("mock-model", "mock/mock-model")
    assert m.object == "model"


def test_models_retrieve_unknown(config_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        config_client.models.retrieve("nope-model")
    assert_openai_error(ei.value.response, 404)


def test_models_require_client_key(config_gateway: "Gateway") -> None:
    with config_gateway.http(api_key=None) as http:
        r = http.get("/v1/models")
    assert_openai_error(r, 401)
