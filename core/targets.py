"""Target kinds: one config model per service, each a list in ``Settings`` (``docker:``, ...).

A target is a named thing the agents can act on (an engine, a server, an API). Toolsets read their
target's model through ``TargetClients``; secrets are ``SecretStr`` and may come from a ``*_file``.
Adding a service = a model here and one list field in ``core.config.Settings``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.units import Duration, parse_size

TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def read_secret_file(path: Path | None, key: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        raise ValueError(f"{key}: cannot read secret file {path}: {exc.strerror}") from exc


class Target(Section):
    """Common fields of every named target."""

    name: str = Field(pattern=TARGET_NAME)
    critical: bool = False
    instances: list[str] = Field(
        default_factory=list, description="alert `instance` labels that mean this target"
    )
    site: str = Field(
        default="",
        pattern=r"^([a-z0-9][a-z0-9-]{0,30})?$",
        description="the site whose worker (`homelab-agents worker --site NAME`) runs this "
        "target's tools, beside it; empty: the main worker",
    )


class DockerTarget(Target):
    url: str = "unix:///var/run/docker.sock"
    timeout: float = Field(default=10.0, gt=0)
    watch_events: bool = True
    crash_loop_restarts: int = Field(
        default=3,
        ge=1,
        description="restarts by the engine's own restart policy within crash_loop_window that "
        "make a crash loop (an incident); fewer are left to the policy",
    )
    crash_loop_window: Duration = Field(default=timedelta(minutes=10))


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
        self.dsn = self.dsn or read_secret_file(self.dsn_file, f"{self.name}.dsn_file")
        self.maintenance_dsn = self.maintenance_dsn or read_secret_file(
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
        self.token = self.token or read_secret_file(self.token_file, f"{self.name}.token_file")
        return self


class SshAccess(Section):
    """SSH to a host for what no API can do; the host key is always checked, no agent is used."""

    host: str | None = Field(default=None, description="address; default: the target's host")
    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key_file: Path
    known_hosts: Path | None = Field(
        default=None, description="known_hosts file with the host's key; default ~/.ssh/known_hosts"
    )
    timeout: float = Field(default=15.0, gt=0, description="connect timeout in seconds")


class ProxmoxSSH(SshAccess):
    """SSH to the nodes for what the API cannot do (``pct exec``)."""

    host: str | None = Field(
        default=None, description="address for every node; default: the API host"
    )
    nodes: dict[str, str] = Field(
        default_factory=dict, description="node name -> SSH address, for clusters"
    )


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
        self.token_secret = self.token_secret or read_secret_file(
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
    task_timeout: Duration = Field(
        default=timedelta(minutes=30),
        description="how long start_verify/start_gc wait for their task (it goes on after that)",
    )


class PrometheusTarget(HttpTarget):
    """A Prometheus server (HTTP API). ``promtool`` checks its config where it lives: on this
    machine, or over ``ssh`` on the Prometheus host."""

    lifecycle: bool | None = Field(
        default=None,
        description="whether --web.enable-lifecycle is set (/-/reload); unset: ask the server",
    )
    config_file: Path | None = Field(
        default=None, description="the server's --config.file; unset: ask the server"
    )
    ssh: SshAccess | None = Field(
        default=None, description="where promtool runs (the Prometheus host); unset: locally"
    )
    max_points: int = Field(
        default=500, ge=10, le=11000, description="points per series a range query may return"
    )


class AlertmanagerTarget(HttpTarget):
    """An Alertmanager (API v2)."""

    max_silence: Duration = Field(
        default=timedelta(hours=24), description="the longest silence the agents may create"
    )
    silence_own_alerts: bool = Field(
        default=True,
        description="mute an incident's own alert here while a human is asked to approve, "
        "expired when the incident closes (the first such Alertmanager is used)",
    )
    config_file: Path | None = Field(
        default=None, description="the server's --config.file, for amtool check-config"
    )
    ssh: SshAccess | None = Field(
        default=None, description="where amtool runs (the Alertmanager host); unset: locally"
    )


class GrafanaTarget(HttpTarget):
    """A Grafana (HTTP API) with a service-account token (Viewer plus annotation writes)."""

    org_id: int | None = Field(
        default=None, ge=1, description="X-Grafana-Org-Id; unset: the token's"
    )
    tags: list[str] = Field(
        default_factory=lambda: ["homelab-agents"],
        description="tags added to every annotation the agents write",
    )
    annotate_incidents: bool = Field(
        default=True,
        description="annotate every incident's steps (opened, actions, approvals, verification, "
        "rollback, resolved or escalated) on this Grafana",
    )
    dashboard_uid: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="incident annotations on this dashboard only; unset: org-wide",
    )


class HostSSH(SshAccess):
    host: str = Field(description="the host's address")


class HostTarget(Target):
    """A Linux host reached over SSH (host key checked) or, without ``ssh``, this machine.

    Only a fixed set of commands ever runs (df, du, find, ps, ip, systemctl, journalctl,
    logrotate), as argument vectors; writes are limited to what is listed here.
    """

    ssh: HostSSH | None = None
    sudo: bool = Field(default=False, description="prefix commands with `sudo -n` (see README)")
    units: list[str] = Field(
        default_factory=list, description="systemd units restart_unit may restart"
    )
    logrotate: list[Path] = Field(
        default_factory=list, description="logrotate configs rotate_logs may force (-f)"
    )
    logrotate_state: Path | None = Field(
        default=None, description="logrotate -s state file; unset: the system's"
    )
    interfaces: list[str] = Field(
        default_factory=list, description="network interfaces restart_network_interface may bounce"
    )
    journal_min_size: int = Field(
        default=64 * 1024 * 1024, ge=0, description="journal_vacuum never shrinks below this"
    )
    command_timeout: float = Field(default=60.0, gt=0, description="seconds per command")

    @field_validator("journal_min_size", mode="before")
    @classmethod
    def _journal_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("logrotate", "logrotate_state")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        paths = value if isinstance(value, list) else [value] if value is not None else []
        for path in paths:
            if not Path(path).is_absolute():
                raise ValueError(f"{path} must be an absolute path")
        return value


class HomeAssistantTarget(Target):
    """A Home Assistant instance reached through its REST API with a long-lived access token
    (an admin user's: reloading integrations and the config check need admin rights)."""

    url: str = Field(description="base URL, e.g. http://homeassistant.lan:8123")
    token: SecretStr | None = None
    token_file: Path | None = None
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)
    restart_timeout: Duration = Field(
        default=timedelta(minutes=5), description="how long a restart waits for the API to return"
    )
    unavailable_threshold: int = Field(
        default=5, ge=0, description="more unavailable entities than this is an incident"
    )

    @model_validator(mode="after")
    def _secrets(self) -> HomeAssistantTarget:
        self.token = self.token or read_secret_file(self.token_file, f"{self.name}.token_file")
        if self.token is None:
            raise ValueError(f"{self.name}: token or token_file is required")
        _verify_setting(self.verify_tls, f"{self.name}.verify_tls")
        return self


class AdGuardTarget(Target):
    """An AdGuard Home instance: its HTTP API (``/control``) with a web user (basic auth)."""

    url: str = Field(description="base URL of the web interface, e.g. http://adguard.lan:3000")
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)
    stale_after: Duration = Field(
        default=timedelta(days=3), description="a blocklist not updated for this long is stale"
    )

    @model_validator(mode="after")
    def _secrets(self) -> AdGuardTarget:
        self.password = self.password or read_secret_file(
            self.password_file, f"{self.name}.password_file"
        )
        if self.password is None:
            raise ValueError(f"{self.name}: password or password_file is required")
        _verify_setting(self.verify_tls, f"{self.name}.verify_tls")
        return self


class UnboundTarget(Target):
    """An Unbound resolver: ``unbound-control`` (locally or over SSH) and real DNS queries."""

    resolver: str = Field(
        default="127.0.0.1:53", description="address[:port] the resolver answers queries on"
    )
    control: str = Field(default="unbound-control", description="the unbound-control binary")
    config: Path | None = Field(
        default=None, description="unbound.conf passed as -c (its remote-control keys are used)"
    )
    server: str | None = Field(default=None, description="-s host[@port] of the control interface")
    probe_names: list[str] = Field(
        default_factory=lambda: ["example.com"],
        description="names a health probe resolves (choose names your users depend on)",
    )
    timeout: float = Field(default=5.0, gt=0, description="seconds per query and per command")
    ssh: SshAccess | None = Field(default=None, description="run unbound-control over SSH")


class DesiredRecord(Section):
    """A DNS record as it should be. ``content: public_ip`` follows the WAN address (dynamic DNS)."""

    name: str = Field(pattern=r"^[A-Za-z0-9*_.-]{1,253}$")
    type: str = Field(default="A", pattern=r"^(A|AAAA|CNAME|TXT|MX|NS|SRV|CAA)$")
    content: str = Field(min_length=1, description="the value, or public_ip")
    proxied: bool = False
    ttl: int = Field(default=1, ge=1, le=86400, description="1 = automatic")

    @property
    def dynamic(self) -> bool:
        return self.content == "public_ip"


class CloudflareTarget(Target):
    """Cloudflare DNS through API v4 with a scoped API token (Zone.Zone read, Zone.DNS edit on
    the zones listed; nothing else)."""

    api_url: str = "https://api.cloudflare.com/client/v4"
    token: SecretStr | None = None
    token_file: Path | None = None
    zones: list[str] = Field(
        default_factory=list,
        description="zone names the agents may touch; empty = all the token sees",
    )
    records: list[DesiredRecord] = Field(
        default_factory=list, description="the desired state drift is measured against"
    )
    public_ip_url: str = Field(
        default="https://api.ipify.org", description="answers the WAN address as plain text"
    )
    nameservers: list[str] = Field(
        default_factory=list,
        description="authoritative servers (ip[:port]) to check records on; default: the zone's",
    )
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secrets(self) -> CloudflareTarget:
        self.token = self.token or read_secret_file(self.token_file, f"{self.name}.token_file")
        if self.token is None:
            raise ValueError(f"{self.name}: token or token_file is required")
        return self


class TailscaleTarget(Target):
    """A tailnet through the Tailscale API v2: an OAuth client (preferred: scoped, never expires)
    or an API access token."""

    api_url: str = "https://api.tailscale.com"
    tailnet: str = Field(default="-", description="'-' is the tailnet of the credentials")
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_client_secret_file: Path | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    offline_after: Duration = Field(
        default=timedelta(minutes=5), description="not seen for this long counts as offline"
    )
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secrets(self) -> TailscaleTarget:
        self.oauth_client_secret = self.oauth_client_secret or read_secret_file(
            self.oauth_client_secret_file, f"{self.name}.oauth_client_secret_file"
        )
        self.api_key = self.api_key or read_secret_file(
            self.api_key_file, f"{self.name}.api_key_file"
        )
        if self.oauth_client_secret is not None and not self.oauth_client_id:
            raise ValueError(f"{self.name}: oauth_client_id is required with the client secret")
        if self.oauth_client_secret is None and self.api_key is None:
            raise ValueError(
                f"{self.name}: oauth_client_id + oauth_client_secret(_file) or api_key(_file) "
                "is required"
            )
        return self


class UnifiTarget(Target):
    """A UniFi Network application (self-hosted controller or a UniFi OS console) with a local
    admin account."""

    url: str = Field(description="e.g. https://unifi.lan:8443 or https://udm.lan")
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    unifi_site: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the UniFi Network site (the controller's own notion; `site` is the worker's)",
    )
    unifi_os: bool = Field(
        default=False, description="a UniFi OS console (UDM, Cloud Key G2): /proxy/network paths"
    )
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secrets(self) -> UnifiTarget:
        self.password = self.password or read_secret_file(
            self.password_file, f"{self.name}.password_file"
        )
        if self.password is None:
            raise ValueError(f"{self.name}: password or password_file is required")
        _verify_setting(self.verify_tls, f"{self.name}.verify_tls")
        return self


def _backend_ref(value: str, key: str) -> str:
    """``docker:lab/web`` or ``postgres:main[/db]``: a configured target an upstream runs on."""
    service, sep, rest = value.partition(":")
    if not sep or service not in ("docker", "postgres") or not rest or rest.startswith("/"):
        raise ValueError(f"{key}: {value!r} is not docker:TARGET/CONTAINER or postgres:TARGET[/DB]")
    return value


class BackendMap(Section):
    """What runs behind an address a proxy (or broker consumer) points at: the configured Docker
    container or PostgreSQL server the investigation continues on."""

    backends: dict[str, str] = Field(
        default_factory=dict,
        description="upstream host:port (or queue name) → docker:TARGET/CONTAINER or "
        "postgres:TARGET[/DB]",
    )

    @field_validator("backends")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: _backend_ref(v, f"backends.{k}") for k, v in value.items()}


class RedisTarget(Target):
    """A Redis or Valkey server; an ACL user with the commands the tools use (see the README)."""

    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        pattern=r"^(redis|rediss|unix)://",
        description="redis://host:port/db, rediss:// (TLS) or unix:///path.sock",
    )
    username: str | None = Field(default=None, description="ACL user; default: `default`")
    password: SecretStr | None = None
    password_file: Path | None = None
    timeout: float = Field(default=5.0, gt=0)
    maxmemory_ceiling: int = Field(
        default=4 * 1024**3,
        ge=1024 * 1024,
        description="config_set never raises maxmemory above this (bytes or 4g)",
    )

    @field_validator("maxmemory_ceiling", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _secret_files(self) -> RedisTarget:
        self.password = self.password or read_secret_file(
            self.password_file, f"{self.name}.password_file"
        )
        return self


class CommandTarget(Target):
    """A service managed by commands run locally, or over SSH when ``ssh`` is set."""

    ssh: SshAccess | None = None
    command_timeout: float = Field(default=30.0, gt=0, description="seconds per command")


class NginxTarget(CommandTarget, BackendMap):
    """nginx: ``command`` is the argv prefix every nginx call starts with (add ``-c``/``-p``)."""

    command: list[str] = Field(default_factory=lambda: ["nginx"], min_length=1)
    reload_command: list[str] | None = Field(
        default=None,
        description="how to reload; default: command + [-s, reload] (e.g. [systemctl, reload, nginx])",
    )
    status_url: str | None = Field(default=None, description="the stub_status location's URL")
    probe_timeout: float = Field(default=2.0, gt=0, description="upstream probe, seconds")


class CaddyTarget(CommandTarget, BackendMap):
    """Caddy: its admin API, and the config file ``reload`` loads after ``caddy validate``."""

    admin_url: str = "http://127.0.0.1:2019"
    config_file: Path | None = Field(
        default=None, description="the Caddyfile or JSON config `reload` validates and loads"
    )
    adapter: str = Field(default="caddyfile", pattern=r"^[a-z0-9_]+$", description="or json")
    command: list[str] = Field(default_factory=lambda: ["caddy"], min_length=1)
    timeout: float = Field(default=10.0, gt=0)
    probe_timeout: float = Field(default=2.0, gt=0)


class HaproxyTarget(CommandTarget, BackendMap):
    """HAProxy: the runtime API on its stats socket (``stats socket ... level admin``)."""

    socket: str = Field(
        description="unix socket path, or host:port of a TCP stats socket (level admin)"
    )
    config_file: Path | None = Field(default=None, description="checked with haproxy -c first")
    command: list[str] = Field(default_factory=lambda: ["haproxy"], min_length=1)
    reload_command: list[str] | None = Field(
        default=None,
        description="how to reload (e.g. [systemctl, reload, haproxy] or [kill, -USR2, PID])",
    )
    timeout: float = Field(default=5.0, gt=0)


class RabbitmqTarget(Target, BackendMap):
    """RabbitMQ: the management plugin's HTTP API (a `monitoring` user; `management` + queue
    configure rights for purging). ``backends`` maps a queue to the container consuming it."""

    url: str = "http://127.0.0.1:15672"
    username: str = "guest"
    password: SecretStr | None = None
    password_file: Path | None = None
    vhost: str = "/"
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secret_files(self) -> RabbitmqTarget:
        self.password = self.password or read_secret_file(
            self.password_file, f"{self.name}.password_file"
        )
        if self.password is None:
            raise ValueError(f"{self.name}: password or password_file is required")
        return self


class NatsTarget(Target, BackendMap):
    """A NATS server's monitoring port (``-m 8222``): /varz, /connz, /jsz are read-only."""

    url: str = "http://127.0.0.1:8222"
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)


class MosquittoTarget(Target):
    """A Mosquitto broker read through its ``$SYS`` topics (an MQTT user allowed to read them)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    timeout: float = Field(default=5.0, gt=0)
    sys_wait: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="seconds to collect $SYS (≥ the broker's sys_interval)",
    )

    @model_validator(mode="after")
    def _secret_files(self) -> MosquittoTarget:
        self.password = self.password or read_secret_file(
            self.password_file, f"{self.name}.password_file"
        )
        return self


# --- certificates ---------------------------------------------------------------------------------

ENTRY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$"


def _argv(value: list[str] | None, key: str) -> list[str] | None:
    """A command is an argument vector: a non-empty list of words, never a shell line."""
    if value is None:
        return None
    if not value or not all(isinstance(w, str) and w and "\x00" not in w for w in value):
        raise ValueError(
            f"{key}: give a command as a non-empty list of words, e.g. [systemctl, reload, nginx]"
        )
    return value


class CertEndpoint(Section):
    """A TLS endpoint the agents probe from the worker."""

    name: str = Field(pattern=ENTRY_NAME, description="the resource name: certs:<target>/<name>")
    address: str = Field(
        description="host:port to connect to", pattern=r"^\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$"
    )
    server_name: str | None = Field(
        default=None, description="SNI and the name the certificate must match; default: the host"
    )
    cert_name: str | None = Field(
        default=None,
        pattern=ENTRY_NAME,
        description="the certbot lineage that renews it; default: the one whose names cover it",
    )
    reload_command: list[str] | None = Field(
        default=None, description="reloads the server after a renewal (default: the target's)"
    )

    @field_validator("reload_command")
    @classmethod
    def _reload(cls, value: list[str] | None) -> list[str] | None:
        return _argv(value, "reload_command")

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def hostname(self) -> str:
        return self.server_name or self.host


class CertFile(Section):
    """A certificate file (PEM) on the target's host."""

    name: str = Field(pattern=ENTRY_NAME)
    path: str = Field(pattern=r"^/", description="absolute path of the PEM file on the host")
    server_name: str | None = Field(default=None, description="a name it must cover, if any")
    cert_name: str | None = Field(default=None, pattern=ENTRY_NAME)
    reload_command: list[str] | None = None

    @field_validator("reload_command")
    @classmethod
    def _reload(cls, value: list[str] | None) -> list[str] | None:
        return _argv(value, "reload_command")


class CertbotSettings(Section):
    """certbot on the target's host: where its lineages, renewal configs and logs are."""

    command: list[str] = Field(default_factory=lambda: ["certbot"])
    config_dir: str = Field(default="/etc/letsencrypt", pattern=r"^/")
    work_dir: str | None = Field(default=None, pattern=r"^/")
    logs_dir: str = Field(default="/var/log/letsencrypt", pattern=r"^/")
    extra_args: list[str] = Field(default_factory=list, description="added to `certbot renew`")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment for certbot (not secret: it may be visible on the host), e.g. "
        "REQUESTS_CA_BUNDLE for a private ACME CA",
    )
    timeout: Duration = Field(default=timedelta(minutes=5), description="one `certbot renew` run")

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        checked = _argv(value, "certbot.command")
        assert checked is not None
        return checked


class BlackboxSource(Section):
    """Endpoints blackbox_exporter probes, read from a Prometheus target's
    ``probe_ssl_earliest_cert_expiry`` series (their ``instance`` labels)."""

    prometheus: str = Field(pattern=TARGET_NAME, description="a `prometheus:` target's name")
    selector: str = Field(
        default="",
        pattern=r'^[A-Za-z0-9_]*(=~?|!=|!~)?("[^"]*")?(,\s*[A-Za-z0-9_]+(=~?|!=|!~)"[^"]*")*$',
        description='label matchers inside {}, e.g. job="blackbox-tls"',
    )


class CertsTarget(Target):
    """Certificates on one host: TLS endpoints, PEM files and certbot's lineages there.

    Endpoints are probed from the worker; files, certbot and reloads run on the host (locally, or
    over ``ssh`` with the host key checked)."""

    endpoints: list[CertEndpoint] = Field(default_factory=list)
    files: list[CertFile] = Field(default_factory=list)
    ca_file: Path | None = Field(
        default=None, description="PEM bundle to verify chains against instead of the system CAs"
    )
    warn_days: float = Field(
        default=30, gt=0, description="due for renewal (at most 1/3 of its lifetime)"
    )
    critical_days: float = Field(
        default=7, gt=0, description="critical (at most 1/10 of its lifetime)"
    )
    certbot: CertbotSettings | None = None
    renew_command: list[str] | None = Field(
        default=None,
        description="instead of `certbot renew --cert-name X`: this argv, `{cert_name}` replaced",
    )
    reload_command: list[str] | None = Field(
        default=None, description="after a renewal, e.g. [systemctl, reload, nginx]"
    )
    ssh: SshAccess | None = None
    blackbox: BlackboxSource | None = None
    timeout: float = Field(default=10.0, gt=0, description="TLS connect and handshake, seconds")
    min_rsa_bits: int = Field(default=2048, ge=1024)

    @field_validator("renew_command", "reload_command")
    @classmethod
    def _commands(cls, value: list[str] | None) -> list[str] | None:
        return _argv(value, "command")

    @model_validator(mode="after")
    def _entries(self) -> CertsTarget:
        names = [e.name for e in self.endpoints] + [f.name for f in self.files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{self.name}: endpoint/file names must be unique: {', '.join(dupes)}")
        if self.critical_days >= self.warn_days:
            raise ValueError(f"{self.name}: critical_days must be below warn_days")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"{self.name}.ca_file: CA file {self.ca_file} does not exist")
        if not (self.endpoints or self.files or self.certbot or self.blackbox):
            raise ValueError(f"{self.name}: give endpoints, files, certbot or blackbox")
        return self


# --- backups --------------------------------------------------------------------------------------


class PrunePolicy(Section):
    """What `prune` keeps (restic forget / borg prune semantics); everything else is removed."""

    keep_last: int | None = Field(default=None, ge=1)
    keep_hourly: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    keep_yearly: int | None = Field(default=None, ge=1)
    keep_within: str | None = Field(
        default=None, pattern=r"^(\d+[ymwdhHMS])+$", description="e.g. 7d, 2y5m (borg: one unit)"
    )

    @model_validator(mode="after")
    def _something_kept(self) -> PrunePolicy:
        if not any(v is not None for v in self.model_dump().values()):
            raise ValueError("a prune policy must keep something (keep_last, keep_daily, ...)")
        return self

    def flags(self) -> list[str]:
        """``--keep-daily 7 ...``: the same flag names in restic and borg."""
        out: list[str] = []
        for key, value in self.model_dump().items():
            if value is not None:
                out += [f"--{key.replace('_', '-')}", str(value)]
        return out


class BackupJob(Section):
    """Where the backup job that writes a repository logs (for diagnosis)."""

    log_file: str | None = Field(default=None, pattern=r"^/")
    unit: str | None = Field(default=None, description="systemd unit: read with journalctl")
    lines: int = Field(default=40, ge=1, le=500)

    @model_validator(mode="after")
    def _one(self) -> BackupJob:
        if not self.log_file and not self.unit:
            raise ValueError("backup job: give log_file or unit")
        return self


class BackupRepository(Section):
    """A restic or borg repository; the password never leaves the worker except on the tool's
    stdin, or stays on the host in ``password_file`` (read by restic/borg themselves)."""

    name: str = Field(pattern=ENTRY_NAME, description="the resource name: backups:<target>/<name>")
    kind: Literal["restic", "borg"]
    repository: str = Field(min_length=1, description="a path, or a URL restic/borg support")
    password: SecretStr | None = Field(default=None, description="prefer password_file")
    password_file: str | None = Field(
        default=None, pattern=r"^/", description="on the host that runs restic/borg"
    )
    max_age: Duration = Field(default=timedelta(hours=26), description="newer snapshot expected")
    stale_lock_after: Duration | None = Field(
        default=None,
        description="a lock older than this is stale (default: restic 30m, as restic itself; "
        "borg 24h, since borg does not refresh its locks)",
    )
    prune: PrunePolicy | None = None
    job: BackupJob | None = None
    env: dict[str, str] = Field(
        default_factory=dict,
        description="more environment (not secret), e.g. RESTIC_CACHE_DIR, BORG_BASE_DIR, BORG_RSH",
    )
    binary: str | None = Field(default=None, description="default: restic or borg on the PATH")
    sweep_check: bool = Field(default=True, description="the daily sweep runs `check`")
    check_read_data_subset: str | None = Field(
        default=None,
        pattern=r"^(\d+/\d+|\d+(\.\d+)?%|\d+[KMGT]?)$",
        description="restic: the sweep's check also reads this subset of the data (e.g. 1/7)",
    )
    timeout: Duration = Field(default=timedelta(hours=1), description="check, prune and unlock")

    @field_validator("repository")
    @classmethod
    def _no_inline_credentials(cls, value: str) -> str:
        if re.search(r"://[^/@\s]*:[^/@\s]*@", value):
            raise ValueError(
                "no credentials in the repository URL (they would show in process lists): use "
                "the backend's environment or config file"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
                raise ValueError(f"env: {key!r} is not an environment variable name")
            if re.search(r"PASS|SECRET|TOKEN|KEY", key) and key not in ("BORG_KEY_FILE",):
                raise ValueError(
                    f"env: {key} looks secret; environment values may show on the host. Use "
                    "password/password_file"
                )
        return value

    @model_validator(mode="after")
    def _password(self) -> BackupRepository:
        if self.password and self.password_file:
            raise ValueError(f"{self.name}: give password or password_file, not both")
        if self.kind == "restic" and not (self.password or self.password_file):
            raise ValueError(f"{self.name}: a restic repository needs password or password_file")
        if self.check_read_data_subset and self.kind != "restic":
            raise ValueError(f"{self.name}: check_read_data_subset is restic only")
        return self


class BackupsTarget(Target):
    """A host that runs restic/borg against its repositories (locally, or over ``ssh``)."""

    ssh: SshAccess | None = None
    repositories: list[BackupRepository] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BackupsTarget:
        names = [r.name for r in self.repositories]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{self.name}: repository names must be unique: {', '.join(dupes)}")
        return self

    def repository(self, name: str) -> BackupRepository | None:
        return next((r for r in self.repositories if r.name == name), None)
