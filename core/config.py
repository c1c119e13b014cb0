"""Configuration: one YAML file, every key overridable from the environment.

Precedence: ``HOMELAB_*`` environment variables (``__`` for nesting, JSON for lists) over the YAML
file over the defaults below. Secrets are ``SecretStr`` (never printed) and may come from a
``*_file`` sibling key instead of the value itself.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.memory import FlapLimit
from core.models import ApprovalMode, RiskLevel, TargetRef
from core.schedules import SCHEDULE_NAME, ScheduleJob, default_schedules
from core.targets import (
    AdGuardTarget,
    AlertmanagerTarget,
    BackupsTarget,
    CaddyTarget,
    CertsTarget,
    CloudflareTarget,
    DockerTarget,
    GrafanaTarget,
    HaproxyTarget,
    HomeAssistantTarget,
    HostTarget,
    MosquittoTarget,
    NatsTarget,
    NginxTarget,
    PbsTarget,
    PostgresTarget,
    PrometheusTarget,
    ProxmoxTarget,
    RabbitmqTarget,
    RedisTarget,
    Section,
    TailscaleTarget,
    Target,
    UnboundTarget,
    UnifiTarget,
    read_secret_file,
)
from core.units import Duration

DEFAULT_CONFIG_PATH = Path("homelab.yaml")


class ConfigError(Exception):
    """A configuration problem, phrased for the user (names the key and the file)."""


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
        self.api_key = self.api_key or read_secret_file(self.api_key_file, "temporal.api_key_file")
        return self

    def web_ui(self) -> str:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.address:
            return ""
        return f"http://{self.ip}:{self.ui_port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard: reachable from elsewhere


class IntakeSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    token_file: Path | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_alerts_per_post: int = Field(
        default=1000, ge=1, description="alerts in one webhook post (each may start a workflow)"
    )
    dedup_window: Duration = Field(
        default=timedelta(hours=1),
        description="how long a delivered notification (fingerprint, status, startsAt) is "
        "remembered: a repeat within it is acknowledged and not delivered again",
    )
    forward_concurrency: int = Field(
        default=16, ge=1, le=256, description="alerts of different fingerprints sent at once"
    )

    @model_validator(mode="after")
    def _secret_files(self) -> IntakeSettings:
        self.token = self.token or read_secret_file(self.token_file, "intake.token_file")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"intake.token (or intake.token_file) is required when intake.host is "
                f"{self.host!r}: anyone who can reach it could open incidents"
            )
        return self


class StoreSettings(Section):
    """The store's URLs are secrets (a PostgreSQL URL carries a password): never printed.

    ``url`` is what every process uses at run time; on PostgreSQL it should be a role that may
    only read and insert into the append-only tables. ``owner_url`` (optional) is the role that
    owns the schema: ``homelab-agents migrate`` (and ``up``/``worker`` when it is set) runs the
    migrations and grants with it, so the run-time role never needs DDL.
    """

    url: SecretStr | None = Field(
        default=None, description="sqlite:///path or postgresql://...; default in state_dir"
    )
    url_file: Path | None = None
    owner_url: SecretStr | None = Field(
        default=None, description="the schema owner's URL, for migrations only"
    )
    owner_url_file: Path | None = None

    @model_validator(mode="after")
    def _secret_files(self) -> StoreSettings:
        self.url = self.url or read_secret_file(self.url_file, "store.url_file")
        self.owner_url = self.owner_url or read_secret_file(
            self.owner_url_file, "store.owner_url_file"
        )
        for key, secret in (("url", self.url), ("owner_url", self.owner_url)):
            value = secret.get_secret_value() if secret else ""
            if value and not re.match(r"^(sqlite|postgresql|postgres)(\+\w+)?://", value):
                raise ValueError(f"store.{key} must start with sqlite:/// or postgresql://")
        if self.owner_url and not self.url:
            raise ValueError("store.owner_url needs store.url (the run-time role it grants to)")
        return self


class EmbedderSettings(Section):
    """How incidents become vectors. ``hashing`` (scikit-learn's HashingVectorizer) works offline
    with no download; any other model is a litellm embedding model, keyed like ``llm.providers``
    (``ollama/nomic-embed-text``, ``openai/text-embedding-3-small``, ``openai/<name>`` with an
    OpenAI-compatible ``api_base``). Each embedder has its own collection: vectors never mix."""

    model: str = Field(default="hashing", min_length=1, max_length=200)
    dimensions: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        description="hashing: vector size (default 256); providers: sent as `dimensions` when set",
    )
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, description="environment variable with the key")
    timeout: Duration = timedelta(seconds=10)

    @property
    def is_hashing(self) -> bool:
        return self.model == "hashing"


class MemorySettings(Section):
    enabled: bool = Field(
        default=True,
        description="remember closed incidents and recall them when planning; off: plans "
        "ignore the past (learned restrictions and the flapping guard still apply)",
    )
    qdrant: str = Field(
        default="",
        description="http(s)://host:6333 for a Qdrant server, or a local path "
        "(default: <state_dir>/memory, qdrant-client's embedded mode)",
    )
    api_key: SecretStr | None = Field(default=None, description="a Qdrant server's API key")
    api_key_file: Path | None = None
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    recall_limit: int = Field(default=5, ge=1, le=20, description="similar incidents recalled")
    min_score: float = Field(
        default=0.5, ge=-1, le=1, description="cosine similarity a recalled incident needs"
    )
    half_life: Duration = Field(
        default=timedelta(days=30), description="an outcome this old counts half in the record"
    )
    record_window: int = Field(
        default=200, ge=10, description="latest outcomes per alert and kind of target counted"
    )
    flapping: FlapLimit = Field(default_factory=FlapLimit)
    restrict_after: int = Field(
        default=2,
        ge=1,
        description="failed verifications or rollbacks of an action on a "
        "target that make it HARD there until a human clears it",
    )
    suggest_after: int = Field(
        default=5,
        ge=1,
        description="approvals (all verified, no 👎) before `policy suggest` "
        "proposes a lower level",
    )

    @model_validator(mode="after")
    def _secret_files(self) -> MemorySettings:
        self.api_key = self.api_key or read_secret_file(self.api_key_file, "memory.api_key_file")
        return self

    @field_validator("half_life")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @property
    def is_server(self) -> bool:
        return self.qdrant.startswith(("http://", "https://"))


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
    public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="approver (or telegram-bot) → Ed25519 public key (base64), besides keys_dir",
    )
    keys_dir: Path | None = Field(
        default=None,
        description="approvers' key pairs (NAME.key private, NAME.pub public); "
        "default state_dir/keys",
    )
    cli_key_file: Path | None = Field(
        default=None,
        description="the private key `approve`/`deny` sign with; default keys_dir/NAME.key",
    )
    allow_unsigned: bool = Field(
        default=False,
        description="count decisions without a signature (a single-user lab only: anyone who "
        "reaches Temporal could approve)",
    )

    @field_validator("public_keys")
    @classmethod
    def _keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, key in keys.items():
            try:
                raw = base64.b64decode(key.strip(), validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError(f"{name}: not an Ed25519 public key (base64 of 32 bytes)")
        return keys

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
    signing_key_file: Path | None = Field(
        default=None,
        description="the bot's private key: it signs for the Telegram users it authenticated "
        "(default approval keys_dir/telegram-bot.key)",
    )

    @model_validator(mode="after")
    def _secret_files(self) -> TelegramSettings:
        self.token = self.token or read_secret_file(self.token_file, "telegram.token_file")
        self.webhook_secret = self.webhook_secret or read_secret_file(
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
    offer: list[str] = Field(
        default_factory=list,
        description="write tools (names or patterns) the LLM may propose beyond the runbook's "
        "remediations; default none",
    )
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


class WorkerSettings(Section):
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 = no metrics server")
    max_concurrent_activities: int = Field(default=50, ge=1)


def _is_target_list(annotation: Any) -> bool:
    """``list[SomeTarget]``: a service's section of named targets."""
    args = get_args(annotation)
    return (
        get_origin(annotation) is list
        and len(args) == 1
        and isinstance(args[0], type)
        and issubclass(args[0], Target)
    )


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
    schedules: dict[str, ScheduleJob] | None = Field(
        default=None,
        description="Temporal Schedules by name; unset: the built-in forecast, anomalies, "
        "pattern report and daily sweeps; set: exactly these (one removed here is deleted on the "
        "next apply)",
    )
    docker: list[DockerTarget] = Field(default_factory=lambda: [DockerTarget(name="local")])
    postgres: list[PostgresTarget] = Field(default_factory=list)
    prometheus: list[PrometheusTarget] = Field(default_factory=list)
    alertmanager: list[AlertmanagerTarget] = Field(default_factory=list)
    grafana: list[GrafanaTarget] = Field(default_factory=list)
    hosts: list[HostTarget] = Field(default_factory=list)
    proxmox: list[ProxmoxTarget] = Field(default_factory=list)
    pbs: list[PbsTarget] = Field(default_factory=list)
    homeassistant: list[HomeAssistantTarget] = Field(default_factory=list)
    adguard: list[AdGuardTarget] = Field(default_factory=list)
    unbound: list[UnboundTarget] = Field(default_factory=list)
    cloudflare: list[CloudflareTarget] = Field(default_factory=list)
    tailscale: list[TailscaleTarget] = Field(default_factory=list)
    unifi: list[UnifiTarget] = Field(default_factory=list)
    redis: list[RedisTarget] = Field(default_factory=list)
    nginx: list[NginxTarget] = Field(default_factory=list)
    caddy: list[CaddyTarget] = Field(default_factory=list)
    haproxy: list[HaproxyTarget] = Field(default_factory=list)
    rabbitmq: list[RabbitmqTarget] = Field(default_factory=list)
    nats: list[NatsTarget] = Field(default_factory=list)
    mosquitto: list[MosquittoTarget] = Field(default_factory=list)
    certs: list[CertsTarget] = Field(default_factory=list)
    backups: list[BackupsTarget] = Field(default_factory=list)

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

    @model_validator(mode="after")
    def _unique_target_names(self) -> Settings:
        for service in self.services:
            seen: set[str] = set()
            for target in self.targets(service):
                if target.name in seen:
                    raise ValueError(f"{service}: target name {target.name!r} appears twice")
                seen.add(target.name)
        return self

    @field_validator("schedules")
    @classmethod
    def _schedule_names(cls, jobs: dict[str, ScheduleJob] | None) -> dict[str, ScheduleJob] | None:
        for name in jobs or {}:
            if not re.fullmatch(SCHEDULE_NAME, name):
                raise ValueError(f"schedule name {name!r} must match {SCHEDULE_NAME}")
        return jobs

    def schedule_jobs(self) -> dict[str, ScheduleJob]:
        """The schedules `schedules apply` keeps on Temporal (the built-ins when none are set)."""
        if self.schedules is None:
            return default_schedules(
                bool(self.prometheus),
                certificates=bool(self.certs),
                backups=bool(self.backups or self.pbs or self.proxmox),
            )
        return dict(self.schedules)

    @classmethod
    def service_names(cls) -> list[str]:
        """Every service with a target section, in declaration order."""
        return [name for name, f in cls.model_fields.items() if _is_target_list(f.annotation)]

    @property
    def state_dir(self) -> Path:
        return self.temporal.state_dir

    @property
    def keys_dir(self) -> Path:
        return self.approval.keys_dir or self.state_dir / "keys"

    @property
    def store_url(self) -> str:
        """The run-time store URL, with its password: for ``Store`` only, never for output."""
        if self.store.url:
            return self.store.url.get_secret_value()
        return f"sqlite:///{(self.state_dir / 'homelab.db').resolve()}"

    @property
    def store_owner_url(self) -> str | None:
        """The schema owner's URL (migrations), if one is configured."""
        return self.store.owner_url.get_secret_value() if self.store.owner_url else None

    @property
    def memory_location(self) -> str:
        """Where incident memory lives: a Qdrant server's URL, or a local directory."""
        if self.memory.is_server:
            return self.memory.qdrant.rstrip("/")
        path = Path(self.memory.qdrant) if self.memory.qdrant else self.state_dir / "memory"
        return str(path.resolve())

    def targets(self, service: str) -> list[Target]:
        value = getattr(self, service, None)
        if not isinstance(value, list):
            return []
        return [t for t in value if isinstance(t, Target)]

    def find_target(self, service: str, name: str) -> Target | None:
        return next((t for t in self.targets(service) if t.name == name), None)

    @property
    def services(self) -> list[str]:
        return self.service_names()

    def site_of(self, ref: TargetRef) -> str:
        """The site whose worker runs this target's tools ("" for the main worker)."""
        target = self.find_target(ref.service, ref.target)
        return target.site if target is not None else ""

    def sites(self) -> list[str]:
        return sorted(
            {t.site for service in self.services for t in self.targets(service) if t.site}
        )

    def site_queue(self, site: str) -> str:
        """A site's task queue: its worker polls it, and only it."""
        return f"{self.temporal.task_queue}@{site}" if site else self.temporal.task_queue

    def site_queues(self) -> dict[str, str]:
        """``service:target`` → task queue, for every target at a site (the workflow routes each
        tool call by it)."""
        return {
            f"{service}:{t.name}": self.site_queue(t.site)
            for service in self.services
            for t in self.targets(service)
            if t.site
        }

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
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}): {exc.reason}") from exc
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
