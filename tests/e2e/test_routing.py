"""Aliases and the provider/model form route to the right upstream model."""

from __future__ import annotations

import openai
import pytest

from helpers import assert_upstream_auth
from mock_upstream import HELLO_TEXT, MockUpstream


@pytest.mark.parametrize("requested", ["gpt-4", "mock/mock-model", "mock-model"])
def test_model_name_rewritten_upstream(config_client: openai.OpenAI, mock: MockUpstream, requested: str) -> None:
    r = config_client.chat.completions.create(model=requested, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == HELLO_TEXT
    up = mock.requests_to("/v1/chat/completions")
    assert len(up) == 1
    assert up[0].body["model"] == "mock-model", f"{requested!r} reached upstream as {up[0].body['model']!r}"
    assert_upstream_auth(mock)


@pytest.mark.parametrize("requested", ["gpt-4", "mock/mock-model"])
def test_model_name_rewritten_upstream_streamed(config_client: openai.OpenAI, mock: MockUpstream,
                                                requested: str) -> None:
    chunks = list(config_client.chat.completions.create(
        model=requested, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == HELLO_TEXT
    assert mock.last("/v1/chat/completions").body["model"] == "mock-model"


def test_alias_for_embeddings_provider_form(config_client: openai.OpenAI, mock: MockUpstream) -> None:
    r = config_client.embeddings.create(model="mock/mock-embed", input="x", encoding_format="float")
    assert len(r.data) == 1
    assert mock.last("/v1/embeddings").body["model"] == "mock-embed"
