"""Configuration: one YAML file, every key overridable from the environment.

Precedence: ``HOMELAB_*`` environment variables (``__`` for nesting, JSON for lists) over the YAML
file over the defaults below. Secrets are ``SecretStr`` (never printed) and may come from a
``*_file`` sibling key instead of the value itself.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.models import ApprovalMode, RiskLevel, TargetRef
from core.units import Duration, parse_size

DEFAULT_CONFIG_PATH = Path("homelab.yaml")
TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class ConfigError(Exception):
    """A configuration problem, phrased for the user (names the key and the file)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _read_secret_file(path: Path | None, key: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        raise ValueError(f"{key}: cannot read secret file {path}: {exc.strerror}") from exc


class TemporalSettings(Section):
    address: str | None = Field(
        default=None, description="host:port of a Temporal frontend; unset = embedded dev server"
    )
    namespace: str = "default"
    task_queue: str = "homelab-agents"
    ip: str = "127.0.0.1"
    port: int = Field(default=7233, ge=1, le=65535)
    ui_port: int = Field(default=8233, ge=1, le=65535)
    ui_url: str | None = Field(default=None, description="Web UI base URL used in links")
    state_dir: Path = Path(".homelab")
    dev_server_path: Path | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    tls: bool = False

    @model_validator(mode="after")
    def _secret_files(self) -> TemporalSettings:
        self.api_key = self.api_key or _read_secret_file(self.api_key_file, "temporal.api_key_file")
        return self

    def web_ui(self) -> str:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.address:
            return ""
        return f"http://{self.ip}:{self.ui_port}"


class IntakeSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    token_file: Path | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @model_validator(mode="after")
    def _secret_files(self) -> IntakeSettings:
        self.token = self.token or _read_secret_file(self.token_file, "intake.token_file")
        return self


class StoreSettings(Section):
    url: str = Field(
        default="", description="sqlite:///path or postgresql://...; default in state_dir"
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if url and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url


class MemorySettings(Section):
    qdrant: str = Field(default="", description="local path or http(s) URL; default in state_dir")


class PolicyOverride(Section):
    """First matching override sets an action's base level (before floors and escalations)."""

    action: str = "*"
    target: str = "*"
    level: RiskLevel


class ApprovalSettings(Section):
    mode: ApprovalMode = ApprovalMode.AUTO
    timeout: Duration = timedelta(minutes=5)
    approvers: list[str] = Field(default_factory=list)
    critical: list[str] = Field(
        default_factory=list, description="target patterns, e.g. docker:*/postgres*"
    )
    overrides: list[PolicyOverride] = Field(default_factory=list)
    max_writes_per_target_per_hour: int = Field(default=6, ge=1)
    cli_approver: str | None = Field(default=None, description="identity `approve` uses by default")

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class TelegramSettings(Section):
    token: SecretStr | None = None
    token_file: Path | None = None
    chat_id: int | None = None
    base_url: str = "https://api.telegram.org/bot"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    callback_secret: SecretStr | None = Field(
        default=None, description="unused: callback data are random server-side tokens"
    )
    poll_timeout: int = Field(default=10, ge=0, le=50, description="getUpdates long-poll seconds")

    @model_validator(mode="after")
    def _secret_files(self) -> TelegramSettings:
        self.token = self.token or _read_secret_file(self.token_file, "telegram.token_file")
        self.webhook_secret = self.webhook_secret or _read_secret_file(
            self.webhook_secret_file, "telegram.webhook_secret_file"
        )
        if self.token is not None and self.chat_id is None:
            raise ValueError("telegram.chat_id is required when telegram.token is set")
        if self.mode == "webhook" and self.token is not None:
            if not self.webhook_url:
                raise ValueError("telegram.webhook_url is required in webhook mode")
            if self.webhook_secret is None or not re.fullmatch(
                r"[A-Za-z0-9_-]{1,256}", self.webhook_secret.get_secret_value()
            ):
                raise ValueError(
                    "telegram.webhook_secret (1-256 of A-Z a-z 0-9 _ -) is required in webhook "
                    "mode: it is the only proof an update comes from Telegram"
                )
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None and self.chat_id is not None


class LLMProvider(Section):
    model: str
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, description="environment variable with the key")
    timeout: Duration = timedelta(seconds=30)
    max_attempts: int = Field(default=2, ge=1, le=10)
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    tier: Literal["cheap", "strong"] = "cheap"
    name: str = Field(
        default="",
        max_length=64,
        description="label in the Web UI, metrics and records; default: the model",
    )
    backoff: Duration = Field(
        default=timedelta(seconds=1), description="first retry delay, doubled on each retry"
    )
    max_backoff: Duration = timedelta(seconds=30)
    max_retry_after: Duration = Field(
        default=timedelta(seconds=60),
        description="a 429 asking to wait longer than this fails over at once",
    )
    output: Literal["json", "tools", "text"] = Field(
        default="json",
        description="json: response_format json_object; tools: a forced submit_plan call; "
        "text: neither (models without structured output)",
    )
    max_tokens: int = Field(default=1024, ge=64, le=32768)
    temperature: float = Field(default=0.0, ge=0, le=2)

    @field_validator("timeout", "backoff", "max_backoff")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class LLMSelection(Section):
    """Which tier the chain starts with: strong for severe *and* complex incidents, else cheap.

    The other tier's providers follow as fallbacks, then the runbook planner.
    """

    strong_severities: list[str] = Field(default_factory=lambda: ["critical"])
    complex_incident_types: list[str] = Field(
        default_factory=list, description="incident types that always count as complex"
    )
    complex_min_remediations: int = Field(
        default=2, ge=1, description="a runbook with this many candidate remediations is complex"
    )
    complex_if_diagnostics_failed: bool = Field(
        default=True, description="a failed diagnostic (unclear picture) makes it complex"
    )


class LLMSettings(Section):
    providers: list[LLMProvider] = Field(default_factory=list)
    cache_ttl: Duration = timedelta(hours=1)
    monthly_budget_usd: float = Field(default=1.0, ge=0)
    evidence_budget_chars: int = Field(default=6000, ge=500)
    deadline: Duration = Field(
        default=timedelta(minutes=2),
        description="the whole LLM chain (every provider, retry and repair); once it has passed, "
        "the runbook planner plans",
    )
    selection: LLMSelection = Field(default_factory=LLMSelection)

    @field_validator("deadline")
    @classmethod
    def _deadline_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _provider_names(self) -> LLMSettings:
        """Every provider gets a unique label (the model, numbered when a model repeats)."""
        explicit = [p.name for p in self.providers if p.name]
        for name in explicit:
            if explicit.count(name) > 1:
                raise ValueError(f"providers: name {name!r} appears twice")
        models = [p.model for p in self.providers]
        taken = set(explicit)
        for index, provider in enumerate(self.providers):
            if provider.name:
                continue
            name = provider.model if models.count(provider.model) == 1 else ""
            if not name or name in taken:
                name = f"{provider.model}#{index + 1}"
            provider.name = name
            taken.add(name)
        return self


class Target(Section):
    """Common fields of every named target."""

    name: str = Field(pattern=TARGET_NAME)
    critical: bool = False
    instances: list[str] = Field(
        default_factory=list, description="alert `instance` labels that mean this target"
    )


class DockerTarget(Target):
    url: str = "unix:///var/run/docker.sock"
    timeout: float = Field(default=10.0, gt=0)
    watch_events: bool = True


class PostgresTarget(Target):
    """A PostgreSQL server: ``dsn`` for diagnostics (a pg_monitor role), ``maintenance_dsn`` for
    writes (see deploy/postgres/roles.sql). DSNs are libpq key=value strings or URLs; keep
    passwords out of them (``~/.pgpass``, ``PGPASSFILE``) or read them from ``*_file``."""

    dsn: SecretStr | None = None
    dsn_file: Path | None = None
    maintenance_dsn: SecretStr | None = None
    maintenance_dsn_file: Path | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=5000, ge=100)
    databases: list[str] = Field(
        default_factory=list, description="databases tools may act on; empty = all"
    )
    lock_timeout_ms: int = Field(
        default=10000, ge=100, description="maintenance statements give up waiting for a lock"
    )
    pool_max_size: int = Field(default=4, ge=1, le=50, description="connections per database")

    @model_validator(mode="after")
    def _secret_files(self) -> PostgresTarget:
        self.dsn = self.dsn or _read_secret_file(self.dsn_file, f"{self.name}.dsn_file")
        self.maintenance_dsn = self.maintenance_dsn or _read_secret_file(
            self.maintenance_dsn_file, f"{self.name}.maintenance_dsn_file"
        )
        if self.dsn is None:
            raise ValueError(f"{self.name}: dsn or dsn_file is required")
        return self

    @property
    def read_dsn(self) -> SecretStr:
        assert self.dsn is not None  # the validator guarantees it
        return self.dsn


class HttpTarget(Target):
    url: str
    token: SecretStr | None = None
    token_file: Path | None = None
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secret_files(self) -> HttpTarget:
        self.token = self.token or _read_secret_file(self.token_file, f"{self.name}.token_file")
        return self


class ProxmoxSSH(Section):
    """SSH to the nodes for what the API cannot do (``pct exec``); host keys always verified."""

    host: str | None = Field(
        default=None, description="address for every node; default: the API host"
    )
    nodes: dict[str, str] = Field(
        default_factory=dict, description="node name -> SSH address, for clusters"
    )
    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key_file: Path
    known_hosts: Path | None = Field(
        default=None,
        description="known_hosts file with the nodes' keys; default ~/.ssh/known_hosts",
    )
    timeout: float = Field(default=15.0, gt=0)


class SnapshotPolicy(Section):
    """The agents' own ``ha-`` safety snapshots: when they are required and how many are kept.

    Snapshots the agents did not take are never pruned.
    """

    keep: int = Field(default=3, ge=1, le=50, description="newest ha- snapshots kept per guest")
    max_age: Duration = Field(default=timedelta(days=14), description="older ha- ones are pruned")
    required: bool = Field(
        default=True,
        description="refuse a risky change when the guest's storage cannot snapshot; "
        "false proceeds without the safety net (and says so in the preview)",
    )


def _verify_setting(value: bool | str, key: str) -> bool | str:
    if isinstance(value, str):
        if not Path(value).is_file():
            raise ValueError(f"{key}: CA file {value} does not exist")
    return value


class ApiTokenTarget(Target):
    """A Proxmox product reached through its HTTPS API with an API token (PVE and PBS alike)."""

    host: str
    port: int = Field(ge=1, le=65535)
    token_id: str = Field(
        pattern=r"^[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*$",
        description="user@realm!tokenname",
    )
    token_secret: SecretStr | None = None
    token_secret_file: Path | None = None
    verify_ssl: bool | str = Field(
        default=True, description="true, or the CA file that signed the server; false is unsafe"
    )
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secrets(self) -> ApiTokenTarget:
        self.token_secret = self.token_secret or _read_secret_file(
            self.token_secret_file, f"{self.name}.token_secret_file"
        )
        if self.token_secret is None:
            raise ValueError(f"{self.name}: token_secret or token_secret_file is required")
        _verify_setting(self.verify_ssl, f"{self.name}.verify_ssl")
        return self

    @property
    def token_user(self) -> str:
        return self.token_id.split("!", 1)[0]

    @property
    def token_name(self) -> str:
        return self.token_id.split("!", 1)[1]


class ProxmoxTarget(ApiTokenTarget):
    """A Proxmox VE node or cluster (verify_ssl: e.g. a copy of pve-root-ca.pem)."""

    port: int = Field(default=8006, ge=1, le=65535)
    task_timeout: Duration = Field(
        default=timedelta(minutes=5), description="how long a write waits for its PVE task"
    )
    memory_reserve: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="node memory (bytes or 512m) a memory increase must leave free",
    )
    snapshots: SnapshotPolicy = Field(default_factory=SnapshotPolicy)
    ssh: ProxmoxSSH | None = None

    @field_validator("memory_reserve", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value


class PbsTarget(ApiTokenTarget):
    """A Proxmox Backup Server (verify_ssl: e.g. a copy of /etc/proxmox-backup/proxy.pem)."""

    port: int = Field(default=8007, ge=1, le=65535)
    datastores: list[str] = Field(
        default_factory=list, description="datastores to watch; empty = all"
    )


class WorkerSettings(Section):
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 = no metrics server")
    max_concurrent_activities: int = Field(default=50, ge=1)


def _unique_names(targets: list[Any], section: str) -> list[Any]:
    seen: set[str] = set()
    for target in targets:
        if target.name in seen:
            raise ValueError(f"{section}: target name {target.name!r} appears twice")
        seen.add(target.name)
    return targets


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOMELAB_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    runbook_dirs: list[Path] = Field(default_factory=list)
    docker: list[DockerTarget] = Field(default_factory=lambda: [DockerTarget(name="local")])
    postgres: list[PostgresTarget] = Field(default_factory=list)
    prometheus: list[HttpTarget] = Field(default_factory=list)
    alertmanager: list[HttpTarget] = Field(default_factory=list)
    proxmox: list[ProxmoxTarget] = Field(default_factory=list)
    pbs: list[PbsTarget] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings, file_secret_settings)

    @field_validator("docker", "postgres", "prometheus", "alertmanager", "proxmox", "pbs")
    @classmethod
    def _names(cls, targets: list[Any], info: Any) -> list[Any]:
        return _unique_names(targets, info.field_name)

    @property
    def state_dir(self) -> Path:
        return self.temporal.state_dir

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.state_dir / 'homelab.db').resolve()}"

    def targets(self, service: str) -> list[Target]:
        value = getattr(self, service, None)
        if not isinstance(value, list):
            return []
        return [t for t in value if isinstance(t, Target)]

    def find_target(self, service: str, name: str) -> Target | None:
        return next((t for t in self.targets(service) if t.name == name), None)

    @property
    def services(self) -> list[str]:
        return ["docker", "postgres", "prometheus", "alertmanager", "proxmox", "pbs"]

    def critical_reason(self, ref: TargetRef) -> str:
        """Why a target is critical (its ``critical`` flag or an ``approval.critical`` pattern)."""
        target = self.find_target(ref.service, ref.target)
        if target is not None and target.critical:
            return f"target {ref.service}:{ref.target} is marked critical"
        for pattern in self.approval.critical:
            if fnmatchcase(str(ref), pattern) or fnmatchcase(
                f"{ref.service}:{ref.target}", pattern
            ):
                return f"target {ref} matches critical pattern {pattern!r}"
        return ""


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def config_path(explicit: str | Path | None = None) -> tuple[Path, bool]:
    """The config file to read, and whether the user asked for it explicitly."""
    if explicit:
        return Path(explicit), True
    env = os.environ.get("HOMELAB_CONFIG")
    if env:
        return Path(env), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the YAML file (if any) and the environment; raise ConfigError naming the bad key."""
    file, explicit = config_path(path)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{file}: not valid YAML{where}: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections")
        # A section whose keys are all commented out parses as null: it means "the defaults".
        data = {key: value for key, value in loaded.items() if value is not None}
    elif explicit:
        raise ConfigError(f"config file {file} does not exist")
    origin = f"{file} + HOMELAB_* environment" if file.exists() else "HOMELAB_* environment"
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from exc
    except ValueError as exc:  # secret file problems and env JSON errors
        raise ConfigError(f"invalid configuration ({origin}): {exc}") from exc
