"""Legacy /v1/completions."""

from __future__ import annotations

import openai

from helpers import assert_upstream_auth
from mock_upstream import HELLO_TEXT, MockUpstream


def test_legacy_completion(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    r = any_client.completions.create(model="mock-model", prompt="Say hi")
    assert r.object == "text_completion"
    assert r.id
    assert r.model == "mock-model"
    assert r.choices[0].text == HELLO_TEXT
    assert r.choices[0].index == 0
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens == 2 and r.usage.completion_tokens == 3

    up = mock.last("/v1/completions")
    assert up.body["model"] == "mock-model"
    assert up.body["prompt"] == "Say hi"
    assert_upstream_auth(mock)


def test_legacy_completion_streamed(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    chunks = list(any_client.completions.create(model="mock-model", prompt="Say hi", stream=True))
    assert len(chunks) >= 2
    assert all(c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices) == HELLO_TEXT
    assert mock.last("/v1/completions").body["stream"] is True
