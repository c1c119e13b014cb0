"""Telegram configuration: refused when incomplete or unsafe, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_settings


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "homelab.yaml"
    path.write_text(body)
    return path


def test_not_configured_means_disabled(tmp_path: Path) -> None:
    assert not load_settings(write(tmp_path, "docker: []\n")).telegram.enabled


def test_token_file_and_chat_enable_it_without_printing_the_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("123:secret-token\n")
    settings = load_settings(
        write(tmp_path, f"telegram:\n  token_file: {tmp_path / 'token'}\n  chat_id: -1001\n")
    )
    assert settings.telegram.enabled
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "123:secret-token"
    assert "secret-token" not in repr(settings.telegram)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("telegram:\n  token: x\n", "telegram.chat_id is required"),
        (
            "telegram:\n  token: x\n  chat_id: 1\n  mode: webhook\n",
            "telegram.webhook_url is required in webhook mode",
        ),
        (
            "telegram:\n  token: x\n  chat_id: 1\n  mode: webhook\n  webhook_url: https://h/x\n",
            "telegram.webhook_secret",
        ),
        (
            "telegram:\n  token: x\n  chat_id: 1\n  mode: webhook\n  webhook_url: https://h/x\n"
            "  webhook_secret: 'has spaces'\n",
            "telegram.webhook_secret",
        ),
        ("telegram:\n  poll_timeout: 99\n", "telegram.poll_timeout"),
        ("telegram:\n  mode: push\n", "telegram.mode"),
    ],
)
def test_incomplete_or_unsafe_settings_are_config_errors(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(write(tmp_path, body))
