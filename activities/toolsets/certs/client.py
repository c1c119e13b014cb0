"""The certs toolset, its targets' certificates (endpoints, files, certbot lineages, blackbox
probes) and how a resource names one of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.certs import certbot, host
from core.models import ToolErrorKind
from core.targets import CertEndpoint, CertsTarget

TOOLSET = Toolset(
    service="certs",
    description="TLS certificates: endpoints, files and certbot lineages; expiry, chains, renewal.",
)


@dataclass(frozen=True)
class Entry:
    """One certificate the agents watch: served by an endpoint, or in a file on the host."""

    name: str
    source: Literal["endpoint", "file", "certbot", "blackbox"]
    host: str = ""
    port: int = 0
    server_name: str | None = None
    path: str = ""
    cert_name: str | None = None
    reload_command: tuple[str, ...] | None = None

    @property
    def is_endpoint(self) -> bool:
        return self.source in ("endpoint", "blackbox")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.is_endpoint else self.path

    @property
    def hostname(self) -> str | None:
        return self.server_name or (self.host if self.is_endpoint else None)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "address": self.address,
            "server_name": self.hostname,
            "cert_name": self.cert_name,
        }


def target_of(ctx: ToolContext[Any]) -> CertsTarget:
    target = ctx.clients.target("certs", ctx.ref.target)
    assert isinstance(target, CertsTarget)
    return target


def _endpoint_entry(endpoint: CertEndpoint) -> Entry:
    return Entry(
        name=endpoint.name,
        source="endpoint",
        host=endpoint.host,
        port=endpoint.port,
        server_name=endpoint.server_name,
        cert_name=endpoint.cert_name,
        reload_command=tuple(endpoint.reload_command) if endpoint.reload_command else None,
    )


def configured(target: CertsTarget) -> list[Entry]:
    entries = [_endpoint_entry(e) for e in target.endpoints]
    entries += [
        Entry(
            name=f.name,
            source="file",
            path=f.path,
            server_name=f.server_name,
            cert_name=f.cert_name,
            reload_command=tuple(f.reload_command) if f.reload_command else None,
        )
        for f in target.files
    ]
    return entries


def split_address(text: str) -> tuple[str, int] | None:
    """``https://host[:port]/...``, ``host:port`` or ``[v6]:port`` → (host, port)."""
    if "://" in text:
        parts = urlsplit(text)
        if not parts.hostname:
            return None
        default = 443 if parts.scheme in ("https", "tls", "") else 0
        try:
            port = parts.port or default
        except ValueError:
            return None
        return (parts.hostname, port) if port else None
    host_part, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not host_part:
        return None
    return host_part.strip("[]"), int(port_text)


async def lineages(target: CertsTarget) -> list[certbot.Lineage]:
    """certbot's lineages on the host (none when certbot is not configured)."""
    if target.certbot is None:
        return []
    directory = f"{target.certbot.config_dir.rstrip('/')}/renewal"
    paths = await host.list_files(target, directory, "*.conf")
    texts = await host.read_files(target, paths)
    found = []
    for path, text in texts.items():
        if text is not None:
            name = path.rsplit("/", 1)[-1].removesuffix(".conf")
            found.append(certbot.parse_renewal_conf(name, text))
    return sorted(found, key=lambda lineage: lineage.name)


async def blackbox_entries(ctx: ToolContext[Any]) -> list[Entry]:
    """The TLS endpoints blackbox_exporter probes, from Prometheus's
    ``probe_ssl_earliest_cert_expiry`` series (their ``instance`` labels)."""
    target = target_of(ctx)
    if target.blackbox is None:
        return []
    from activities.toolsets import prometheus  # its client: one path to every Prometheus

    api = ctx.clients.client("prometheus", target.blackbox.prometheus, prometheus.make_client)
    selector = target.blackbox.selector
    query = f"probe_ssl_earliest_cert_expiry{{{selector}}}"
    answer = await prometheus.client.data(api, "/api/v1/query", query=query)
    rows = answer.get("result", []) if isinstance(answer, dict) else []
    known = {(e.host, e.port) for e in configured(target) if e.is_endpoint}
    entries: dict[str, Entry] = {}
    for row in rows:
        instance = str((row.get("metric") or {}).get("instance", ""))
        where = split_address(instance)
        if where is None or where in known or instance in entries:
            continue
        entries[instance] = Entry(name=instance, source="blackbox", host=where[0], port=where[1])
    return list(entries.values())


def lineage_entry(lineage: certbot.Lineage) -> Entry:
    """A lineage watched as its full chain (what a server configured with it sends)."""
    return Entry(
        name=lineage.name,
        source="certbot",
        path=lineage.fullchain or lineage.cert,
        cert_name=lineage.name,
    )


async def all_entries(
    ctx: ToolContext[Any],
) -> tuple[list[Entry], list[certbot.Lineage], list[str]]:
    """Every certificate of the target (configured, blackbox-discovered, certbot lineages not
    already watched as a file), its lineages, and what could not be read."""
    target = target_of(ctx)
    entries = configured(target)
    problems: list[str] = []
    found_lineages: list[certbot.Lineage] = []
    discovered, lineage_result = await asyncio.gather(
        blackbox_entries(ctx), lineages(target), return_exceptions=True
    )
    if isinstance(discovered, ToolFailure):
        problems.append(f"blackbox targets: {discovered.message}")
    elif isinstance(discovered, BaseException):
        raise discovered
    else:
        entries += discovered
    if isinstance(lineage_result, ToolFailure):
        problems.append(f"certbot lineages: {lineage_result.message}")
    elif isinstance(lineage_result, BaseException):
        raise lineage_result
    else:
        found_lineages = lineage_result
        names = {e.name for e in entries}
        paths = {e.path for e in entries}
        for lineage in found_lineages:
            if lineage.name in names or {lineage.cert, lineage.fullchain} & paths:
                continue
            if lineage.fullchain or lineage.cert:
                entries.append(lineage_entry(lineage))
    return entries, found_lineages, problems


async def resolve(ctx: ToolContext[Any]) -> Entry:
    """The certificate ``ctx.ref.resource`` names: an entry's name, an endpoint's address or URL
    (a blackbox ``instance`` label), or a certbot lineage."""
    target = target_of(ctx)
    wanted = ctx.ref.resource.strip()
    if not wanted:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"name the certificate: certs:{target.name}/<endpoint, file or lineage>",
        )
    entries = configured(target)
    for entry in entries:
        if entry.name == wanted:
            return entry
    where = split_address(wanted)
    if where is not None:
        for entry in entries:
            if entry.is_endpoint and (entry.host, entry.port) == where:
                return entry
            if entry.is_endpoint and entry.server_name and (entry.server_name, entry.port) == where:
                return entry
        for entry in await blackbox_entries(ctx):
            if entry.name == wanted or (entry.host, entry.port) == where:
                return entry
    for lineage in await lineages(target):
        if lineage.name == wanted:
            return Entry(
                name=lineage.name, source="certbot", path=lineage.cert, cert_name=lineage.name
            )
    known = ", ".join(e.name for e in entries) or "none configured"
    raise ToolFailure(
        ToolErrorKind.NOT_FOUND,
        f"certs target {target.name} has no certificate {wanted!r} (endpoints and files: {known}; "
        "certbot lineages and blackbox probes are found by name or address)",
    )


def probe(target: CertsTarget) -> str:
    """``doctor``: the configured entries, and certbot's lineages when certbot is configured."""
    parts = [f"{len(target.endpoints)} endpoint(s), {len(target.files)} file(s)"]
    if target.certbot is not None:
        found = asyncio.run(lineages(target))
        parts.append(f"certbot lineages: {', '.join(lineage.name for lineage in found) or 'none'}")
    if target.ssh is not None:
        parts.append(f"host over SSH {target.ssh.user}@{target.ssh.host or '?'}")
    return "; ".join(parts)


TOOLSET.probe = probe
