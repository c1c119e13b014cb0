from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.config import ConfigError, load_settings
from core.models import ApprovalMode, TargetRef


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "homelab.yaml"
    path.write_text(text)
    return path


def test_yaml_then_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "approval:\n  timeout: 2m\n  approvers: [alice]\ndocker:\n  - {name: nas, url: 'tcp://nas:2375'}\n",
    )
    monkeypatch.setenv("HOMELAB_APPROVAL__MODE", "observe")
    monkeypatch.setenv("HOMELAB_INTAKE__PORT", "9999")
    settings = load_settings(path)
    assert settings.approval.timeout == timedelta(minutes=2)
    assert settings.approval.mode is ApprovalMode.OBSERVE
    assert settings.approval.approvers == ["alice"]  # deep-merged, not replaced by the env
    assert settings.intake.port == 9999
    assert [t.name for t in settings.docker] == ["nas"]


def test_environment_list_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_DOCKER", '[{"name": "a", "url": "unix:///a.sock"}, {"name": "b"}]')
    settings = load_settings(write(tmp_path, "{}\n"))
    assert [(t.name, t.url) for t in settings.docker] == [
        ("a", "unix:///a.sock"),
        ("b", "unix:///var/run/docker.sock"),
    ]


def test_bad_keys_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "approval:\n  timeuot: 5m\ndocker:\n  - {name: 'no spaces please'}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert "approval.timeuot: unknown key" in text
    assert "docker.0.name" in text
    assert str(path) in text


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2"):
        load_settings(write(tmp_path, "approval:\n  - : : [\n"))


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_duplicate_target_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="appears twice"):
        load_settings(write(tmp_path, "docker:\n  - {name: a}\n  - {name: a}\n"))


def test_secret_from_file_is_not_printed(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("hunter2\n")
    settings = load_settings(write(tmp_path, f"intake:\n  token_file: {secret}\n"))
    assert settings.intake.token is not None
    assert settings.intake.token.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()


def test_unreadable_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="intake.token_file"):
        load_settings(write(tmp_path, f"intake:\n  token_file: {tmp_path / 'missing'}\n"))


def test_critical_patterns_match_by_pattern_not_exact_name(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            "approval:\n  critical: ['docker:*/postgres*']\ndocker:\n  - {name: nas}\n  - {name: core, critical: true}\n",
        )
    )
    assert settings.critical_reason(TargetRef.parse("docker:nas/postgres-main"))
    assert settings.critical_reason(TargetRef.parse("docker:other/postgres"))
    assert not settings.critical_reason(TargetRef.parse("docker:nas/web"))
    assert "marked critical" in settings.critical_reason(TargetRef.parse("docker:core/web"))


def test_the_shipped_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "homelab.example.yaml"
    for name in ("TELEGRAM_BOT_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(example)
    assert settings.approval.timeout == timedelta(minutes=5)
    assert settings.docker and settings.approval.critical


def test_a_section_with_everything_commented_out_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, "store:\n  # url: postgresql://x\nintake:\n  port: 9000\n")
    )
    assert settings.store.url is None and settings.intake.port == 9000


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "homelab.lan"])
def test_public_intake_needs_a_token(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="intake.token .* is required when intake.host"):
        load_settings(write(tmp_path, f"intake: {{host: '{host}'}}\n"))
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    settings = load_settings(write(tmp_path, f"intake: {{host: '{host}', token_file: {token}}}\n"))
    assert settings.intake.token is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.53"])
def test_loopback_intake_needs_no_token(tmp_path: Path, host: str) -> None:
    assert load_settings(write(tmp_path, f"intake: {{host: '{host}'}}\n")).intake.token is None


def test_store_urls_are_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url_file = tmp_path / "store-url"
    url_file.write_text("postgresql://homelab_app:app-pw-77@db/homelab\n")
    monkeypatch.setenv(
        "HOMELAB_STORE__OWNER_URL", "postgresql://homelab_owner:own-pw-78@db/homelab"
    )
    settings = load_settings(write(tmp_path, f"store:\n  url_file: {url_file}\n"))
    assert settings.store_url == "postgresql://homelab_app:app-pw-77@db/homelab"
    assert settings.store_owner_url == "postgresql://homelab_owner:own-pw-78@db/homelab"
    shown = repr(settings) + settings.model_dump_json()
    assert "app-pw-77" not in shown and "own-pw-78" not in shown


def test_store_url_problems_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="store.url must start with sqlite:/// or postgresql://"):
        load_settings(write(tmp_path, "store:\n  url: mysql://u:p@db/x\n"))
    monkeypatch.setenv("HOMELAB_STORE__OWNER_URL", "postgresql://o@db/x")
    with pytest.raises(ConfigError, match="store.owner_url needs store.url"):
        load_settings(write(tmp_path, "intake: {port: 9000}\n"))
    with pytest.raises(ConfigError, match="store.url_file"):
        load_settings(write(tmp_path, f"store:\n  url_file: {tmp_path / 'none'}\n"))
    monkeypatch.delenv("HOMELAB_STORE__OWNER_URL")
    default = load_settings(write(tmp_path, "intake: {port: 9000}\n"))
    assert default.store_url.startswith("sqlite:///") and default.store_owner_url is None
