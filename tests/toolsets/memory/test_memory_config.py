"""The `memory:` section: the example block loads, secrets come from files, bad values name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "homelab.example.yaml"


def example_block() -> str:
    text = EXAMPLE.read_text()
    block = text[text.index("# memory:") :].split("\n\n", 1)[0]
    return "\n".join(re.sub(r"^# ?", "", line) for line in block.splitlines()) + "\n"


def test_the_example_memory_block_loads(tmp_path: Path) -> None:
    secret = tmp_path / "qdrant"
    secret.write_text("k3y\n")
    config = tmp_path / "homelab.yaml"
    config.write_text(example_block().replace("/run/secrets/qdrant", str(secret)) + "docker: []\n")
    settings = load_settings(config)
    memory = settings.memory
    assert memory.is_server and settings.memory_location == "http://qdrant:6333"
    assert memory.api_key is not None and memory.api_key.get_secret_value() == "k3y"
    assert memory.embedder.model == "ollama/nomic-embed-text" and not memory.embedder.is_hashing
    assert memory.flapping.count == 3 and memory.half_life.days == 30
    assert "k3y" not in repr(settings)


def test_the_default_is_embedded_under_the_state_dir(tmp_path: Path) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(f"temporal: {{state_dir: '{tmp_path / 'st'}'}}\ndocker: []\n")
    settings = load_settings(config)
    assert settings.memory_location == str((tmp_path / "st" / "memory").resolve())
    assert settings.memory.embedder.is_hashing and settings.memory.enabled


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("memory: {flapping: {count: 1}}", "memory.flapping.count"),
        ("memory: {half_life: 0s}", "memory.half_life"),
        ("memory: {embedder: {dimensions: 3}}", "memory.embedder.dimensions"),
        ("memory: {restrict_after: 0}", "memory.restrict_after"),
        ("memory: {qdrant_url: x}", "memory.qdrant_url"),
    ],
)
def test_bad_memory_settings_name_the_key(tmp_path: Path, yaml: str, key: str) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml + "\ndocker: []\n")
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(config)
