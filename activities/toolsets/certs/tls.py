"""Probing a TLS endpoint: the chain the server sends, and whether a client would accept it.

The handshake itself never verifies (an expired or self-signed certificate must still be read);
the chain is judged afterwards by ``openssl verify`` (the verifier clients use; ``cryptography``'s
stricter Web PKI profile rejects typical homelab CAs that every client accepts) against the system
CAs or the target's ``ca_file``, so the evidence says exactly what is wrong: untrusted chain, name
mismatch, expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from activities.catalog import ToolFailure
from activities.toolsets.certs.x509 import covers
from activities.toolsets.commands import CommandResult, run_local
from core.models import ToolErrorKind


@dataclass(frozen=True)
class Probe:
    chain: list[x509.Certificate]
    tls_version: str
    cipher: str
    seconds: float


def _der_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The chain as sent by the server (public in Python 3.13; the same call before that)."""
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


async def probe(host: str, port: int, server_name: str | None, limit: float) -> Probe:
    """Handshake with ``host:port`` (SNI ``server_name``) and return what the server sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read first, judge afterwards
    sni = server_name or host
    started = time.monotonic()
    where = f"{host}:{port}" + (f" (SNI {sni})" if sni != host else "")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=sni), limit
        )
    except TimeoutError as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"TLS handshake with {where} timed out after {limit:g}s"
        ) from exc
    except ssl.SSLError as exc:
        raise ToolFailure(
            ToolErrorKind.FAILED, f"TLS handshake with {where} failed: {exc}"
        ) from exc
    except OSError as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"cannot connect to {where}: {exc.strerror or exc}"
        ) from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = _der_chain(ssl_object)
        cipher = ssl_object.cipher()
        version = ssl_object.version() or ""
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)
    if not der:
        raise ToolFailure(ToolErrorKind.FAILED, f"{where} sent no certificate")
    return Probe(
        chain=[x509.load_der_x509_certificate(d) for d in der],
        tls_version=version,
        cipher=cipher[0] if cipher else "",
        seconds=round(time.monotonic() - started, 3),
    )


def _openssl_reason(result: CommandResult) -> tuple[int, str]:
    """(code, message) of the first ``error N at D depth lookup: message`` line."""
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        match = re.match(r"^error (\d+) at (\d+) depth lookup: (.+)$", line.strip())
        if match:
            depth = int(match.group(2))
            where = "" if depth == 0 else f" (certificate {depth} of the chain)"
            return int(match.group(1)), match.group(3) + where
    return -1, result.tail(200) or f"openssl verify exited {result.exit_status}"


EXPIRED, HOSTNAME_MISMATCH = 10, 62


async def judge(
    chain: list[x509.Certificate], ca_file: Path | None, hostname: str | None
) -> dict[str, Any]:
    """Whether a client would accept this chain now (OpenSSL's own verification, as curl or
    Python do it), and if not, why.

    ``trusted``: the chain leads to a trusted CA (checked at a time inside the leaf's validity,
    without the name); ``verified``: all of it, now, for ``hostname``. ``ca_file`` replaces the
    system CAs."""
    leaf = chain[0]
    store = ["-CAfile", str(ca_file), "-no-CApath", "-no-CAstore"] if ca_file is not None else []
    inside = leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
    with tempfile.TemporaryDirectory(prefix="homelab-certs-") as tmp:
        leaf_pem = Path(tmp) / "leaf.pem"
        leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        untrusted: list[str] = []
        if len(chain) > 1:
            extra = Path(tmp) / "chain.pem"
            extra.write_bytes(
                b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[1:])
            )
            untrusted = ["-untrusted", str(extra)]
        base = ["openssl", "verify", "-purpose", "sslserver", *store, *untrusted]
        trust = await run_local(
            [*base, "-attime", str(int(inside.timestamp())), str(leaf_pem)], limit=15
        )
        name: list[str] = []
        if hostname:
            try:
                ipaddress.ip_address(hostname)
                name = ["-verify_ip", hostname]
            except ValueError:
                name = ["-verify_hostname", hostname]
        now = await run_local([*base, *name, str(leaf_pem)], limit=15)
    trust_code, trust_error = (0, "") if trust.ok else _openssl_reason(trust)
    code, error = (0, "") if now.ok else _openssl_reason(now)
    return {
        "verified": now.ok,
        "verify_error": error or None,
        "trusted": trust.ok,
        "trust_error": trust_error or None,
        "hostname": hostname,
        "hostname_ok": covers(leaf, hostname) if hostname else None,
        "expired_in_chain": code == EXPIRED,
        "ca": str(ca_file) if ca_file else "system",
    }
