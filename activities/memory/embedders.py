"""Incident text → vector. The default needs no download; providers go through litellm.

* ``hashing``: scikit-learn's ``HashingVectorizer`` (stateless, deterministic across processes,
  fixed dimension, offline): lexical similarity of alert names, labels, states and log words.
* any other model: litellm's embedding API (``ollama/nomic-embed-text``,
  ``openai/text-embedding-3-small``, an OpenAI-compatible ``api_base``), keyed like the LLM chain.

An embedder never returns a vector it cannot stand behind: no words, a zero or non-finite vector,
or a provider failure raise ``EmbeddingError`` and the caller stores no vector at all.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
from typing import Any, Protocol

from core.config import EmbedderSettings
from core.redact import redact_text

DEFAULT_DIMENSIONS = 256


class EmbeddingError(Exception):
    """No trustworthy vector for this text (the message is safe to log)."""


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Which embedder (with its dimension once known): its vectors never meet another's."""
        ...

    async def embed(self, text: str) -> list[float]: ...


def checked(vector: list[float], who: str) -> list[float]:
    """The vector at unit length (the store scores by dot product: cosine for unit vectors), or
    EmbeddingError: a zero or non-finite vector would match nothing (or everything) and poison
    the collection."""
    if not vector:
        raise EmbeddingError(f"{who} returned an empty vector")
    total = 0.0
    for value in vector:
        if not math.isfinite(value):
            raise EmbeddingError(f"{who} returned a non-finite value")
        total += value * value
    if total <= 1e-12:
        raise EmbeddingError(f"{who} returned a zero vector")
    norm = math.sqrt(total)
    return [value / norm for value in vector]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "embedder"


class HashingEmbedder:
    """Word and word-pair hashing into a fixed number of buckets, L2-normalised."""

    def __init__(self, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        self.dimensions = dimensions
        self._vectorizer: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"hashing-{self.dimensions}"

    def _build(self) -> Any:
        with self._lock:
            if self._vectorizer is None:
                from sklearn.feature_extraction.text import HashingVectorizer

                self._vectorizer = HashingVectorizer(
                    n_features=self.dimensions,
                    alternate_sign=False,
                    norm="l2",
                    ngram_range=(1, 2),
                    token_pattern=r"(?u)\b\w[\w-]*\b",
                )
        return self._vectorizer

    def embed_sync(self, text: str) -> list[float]:
        matrix = self._build().transform([text])
        if matrix.nnz == 0:
            raise EmbeddingError("the incident text has no words to embed")
        return checked([float(v) for v in matrix.toarray()[0]], self.name)

    async def embed(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_sync, text)


class LiteLLMEmbedder:
    """One embedding model through litellm (imported on first use, in a thread)."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.dimensions: int | None = settings.dimensions

    @property
    def name(self) -> str:
        base = slug(self.settings.model)
        return f"{base}-{self.dimensions}" if self.dimensions else base

    def _key(self) -> str | None:
        env = self.settings.api_key_env
        if not env:
            return None
        value = os.environ.get(env, "")
        if not value:
            raise EmbeddingError(f"memory.embedder.api_key_env: {env} is not set")
        return value

    async def embed(self, text: str) -> list[float]:
        if not text.strip():
            raise EmbeddingError("the incident text has no words to embed")
        from activities.llm.client import litellm_module

        litellm = await litellm_module()
        kwargs: dict[str, Any] = {
            "model": self.settings.model,
            "input": [text],
            "timeout": self.settings.timeout.total_seconds(),
            "num_retries": 0,
        }
        key = self._key()
        if key:
            kwargs["api_key"] = key
        if self.settings.api_base:
            kwargs["api_base"] = self.settings.api_base
        if self.settings.dimensions:
            kwargs["dimensions"] = self.settings.dimensions
        try:
            response = await asyncio.wait_for(
                litellm.aembedding(**kwargs), self.settings.timeout.total_seconds() + 1
            )
            item = response.data[0]
            raw = item["embedding"] if isinstance(item, dict) else item.embedding
            vector = [float(v) for v in raw]
        except EmbeddingError:
            raise
        except Exception as exc:  # any provider failure: no vector, never a guess
            message = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            raise EmbeddingError(f"{self.settings.model}: {message}") from None
        unit = checked(vector, self.settings.model)
        self.dimensions = len(unit)
        return unit


def make_embedder(settings: EmbedderSettings) -> Embedder:
    if settings.is_hashing:
        return HashingEmbedder(settings.dimensions or DEFAULT_DIMENSIONS)
    return LiteLLMEmbedder(settings)
