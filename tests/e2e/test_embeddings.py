"""Embeddings through the config-file gateway."""

from __future__ import annotations

import openai
import pytest

from helpers import assert_upstream_auth
from mock_upstream import EMBED_DIM, MockUpstream, embedding_for


@pytest.mark.parametrize("encoding_format", [None, "float"], ids=["sdk-default-base64", "float"])
def test_embeddings_list_input(config_client: openai.OpenAI, mock: MockUpstream, encoding_format) -> None:
    kw = {"encoding_format": encoding_format} if encoding_format else {}
    r = config_client.embeddings.create(model="mock-embed", input=["a", "b"], **kw)

    assert r.object == "list"
    assert len(r.data) == 2
    assert [d.index for d in r.data] == [0, 1]
    assert all(d.object == "embedding" for d in r.data)
    vecs = [d.embedding for d in r.data]
    assert all(isinstance(v, list) and len(v) == EMBED_DIM for v in vecs), vecs
    assert vecs == [embedding_for("a"), embedding_for("b")], "vectors must be the upstream's, in input order"
    assert r.usage is not None and r.usage.prompt_tokens == 2 and r.usage.total_tokens == 2

    up = mock.last("/v1/embeddings")
    assert up.body["model"] == "mock-embed"
    assert up.body["input"] == ["a", "b"]
    assert_upstream_auth(mock)


def test_embeddings_string_input(config_client: openai.OpenAI, mock: MockUpstream) -> None:
    r = config_client.embeddings.create(model="mock-embed", input="hello world", encoding_format="float")
    assert len(r.data) == 1
    assert r.data[0].embedding == embedding_for("hello world")
    assert mock.last("/v1/embeddings").body["input"] in ("hello world", ["hello world"])
