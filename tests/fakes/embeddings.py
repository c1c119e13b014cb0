"""A fake OpenAI-compatible embeddings API (real HTTP), the shape Ollama and vLLM also serve.

``POST /v1/embeddings`` with ``{"model", "input": str | [str], "encoding_format"?: "float" |
"base64", "dimensions"?}`` answers ``{"object": "list", "data": [{"object": "embedding", "index",
"embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``; errors are
``{"error": {"message", "type", "param", "code"}}``; a missing or wrong bearer key is a 401.
Vectors are deterministic per text (hashed words, so similar texts are similar).

Behaviours: ``ok``; ``error`` (500); ``zeros`` (a 200 whose vectors are all zeros, which a client
must refuse); ``nan`` (a vector with NaN as JSON cannot carry it, so a string where a number goes).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from tests.fakes.httpfake import FakeServer, Reply, Request


def _error(status: int, message: str, kind: str, code: str | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


class FakeEmbeddings:
    def __init__(self, dimensions: int = 64, api_key: str | None = None) -> None:
        self.dimensions = dimensions
        self.api_key = api_key
        self.behaviour = "ok"
        self.requests: list[Request] = []
        self.server = FakeServer(self)

    @property
    def api_base(self) -> str:
        return f"{self.server.url}/v1"

    def stop(self) -> None:
        self.server.stop()

    def vector(self, text: str, dimensions: int) -> list[float]:
        out = [0.0] * dimensions
        for word in text.lower().split():
            digest = hashlib.sha256(word.encode()).digest()
            out[int.from_bytes(digest[:4], "little") % dimensions] += 1.0
        norm = math.sqrt(sum(v * v for v in out)) or 1.0
        return [v / norm for v in out]

    def answer(self, request: Request) -> Reply:
        if request.method != "POST" or request.path.rstrip("/") != "/v1/embeddings":
            return _error(
                404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error"
            )
        if self.api_key is not None and request.header("authorization") != f"Bearer {self.api_key}":
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        body = request.body if isinstance(request.body, dict) else {}
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not body.get("model"):
            return _error(400, "'input' and 'model' are required", "invalid_request_error")
        if self.behaviour == "error":
            return _error(
                500, "The server had an error while processing your request.", "server_error"
            )
        dimensions = int(body.get("dimensions") or self.dimensions)
        data = []
        for index, text in enumerate(texts):
            vector: list[Any] = self.vector(str(text), dimensions)
            if self.behaviour == "zeros":
                vector = [0.0] * dimensions
            elif self.behaviour == "nan":
                vector[0] = "NaN"
            embedding: Any = vector
            if body.get("encoding_format") == "base64" and self.behaviour != "nan":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )
