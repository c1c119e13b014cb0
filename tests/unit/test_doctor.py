from __future__ import annotations

import pytest

from core.config import LLMProvider
from workers.doctor import _llm_provider


def test_llm_provider_check_names_the_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = LLMProvider(model="openai/gpt-4o-mini", api_key_env="HL_TEST_KEY")
    monkeypatch.delenv("HL_TEST_KEY", raising=False)
    with pytest.raises(RuntimeError, match="HL_TEST_KEY is not set"):
        _llm_provider(provider)
    monkeypatch.setenv("HL_TEST_KEY", "sk-test-123456789")
    assert "openai/gpt-4o-mini" in _llm_provider(provider)


def test_llm_provider_check_reaches_a_self_hosted_endpoint() -> None:
    provider = LLMProvider(model="openai/local", api_base="http://127.0.0.1:9/v1")
    with pytest.raises(Exception, match="(?i)refused|connect"):
        _llm_provider(provider)
