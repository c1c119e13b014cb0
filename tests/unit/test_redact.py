from __future__ import annotations

from core.redact import redact, redact_text


def test_redacts_credentials_in_text() -> None:
    text = (
        "postgresql://app:hunter2@db:5432/x password=s3cret token: abc123 "
        "Authorization: Bearer eyJhbGciOi.x.y PVEAPIToken=root@pam!lab=1234-abcd sk-proj1234567890abcdef "
        "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"
    )
    out = redact_text(text)
    for secret in (
        "hunter2",
        "s3cret",
        "abc123",
        "eyJhbGciOi",
        "1234-abcd",
        "proj1234567890",
        "AAHfiqks",
    ):
        assert secret not in out, secret
    assert "postgresql://app:***@db:5432/x" in out


def test_redacts_secret_keys_deeply() -> None:
    data = {"params": {"memory": 512, "api_key": "k", "nested": [{"password": "p", "name": "web"}]}}
    assert redact(data) == {
        "params": {"memory": 512, "api_key": "***", "nested": [{"password": "***", "name": "web"}]}
    }
