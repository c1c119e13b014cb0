"""One way to ask a DNS server a question (dnspython, async UDP with a TCP retry on truncation).

Resolvers and authoritative servers are probed the way a client sees them: a real query, its
rcode, answers and latency. A server that does not answer is UNREACHABLE; a malformed address or
name is INVALID. SERVFAIL and NXDOMAIN are answers, not failures: callers judge them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from activities.catalog import ToolFailure
from core.models import ToolErrorKind


@dataclass(frozen=True)
class Answer:
    server: str
    name: str
    rdtype: str
    rcode: str
    answers: list[str] = field(default_factory=list)
    ttl: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rcode == "NOERROR" and bool(self.answers)

    def as_dict(self) -> dict[str, object]:
        return {
            "server": self.server,
            "name": self.name,
            "type": self.rdtype,
            "rcode": self.rcode,
            "answers": self.answers,
            "ttl": self.ttl,
            "ok": self.ok,
            "ms": round(self.seconds * 1000, 1),
        }


def split_server(address: str, default_port: int = 53) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``[::1]:53`` or ``1.2.3.4@5353`` (unbound's form)."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":@")
    elif text.count(":") == 1 or "@" in text:
        host, _, port = text.replace("@", ":").partition(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ToolFailure(ToolErrorKind.INVALID, f"{address!r} is not address[:port]") from None
    if not host or not 0 < number < 65536:
        raise ToolFailure(ToolErrorKind.INVALID, f"{address!r} is not address[:port]")
    return host, number


async def query(server: str, name: str, rdtype: str = "A", *, limit: float = 3.0) -> Answer:
    """Ask ``server`` for ``name``/``rdtype`` with recursion desired."""
    host, port = split_server(server)
    try:
        qname = dns.name.from_text(name)
        kind = dns.rdatatype.from_text(rdtype)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ToolFailure(ToolErrorKind.INVALID, f"cannot ask for {name} {rdtype}: {exc}") from exc
    request = dns.message.make_query(qname, kind)
    started = time.monotonic()
    try:
        response = await dns.asyncquery.udp(request, host, port=port, timeout=limit)
        if response.flags & dns.flags.TC:
            response = await dns.asyncquery.tcp(request, host, port=port, timeout=limit)
    except dns.exception.Timeout as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE,
            f"DNS server {host}:{port} did not answer {name} {rdtype} within {limit:g}s",
        ) from exc
    except (OSError, dns.exception.DNSException) as exc:
        raise ToolFailure(
            ToolErrorKind.UNREACHABLE, f"DNS server {host}:{port}: {type(exc).__name__}: {exc}"
        ) from exc
    seconds = time.monotonic() - started
    answers: list[str] = []
    ttl: int | None = None
    for rrset in response.answer:
        if rrset.rdtype != kind:
            continue
        ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
        answers.extend(rdata.to_text() for rdata in rrset)
    return Answer(
        server=f"{host}:{port}",
        name=name.rstrip("."),
        rdtype=rdtype,
        rcode=dns.rcode.to_text(response.rcode()),
        answers=sorted(answers),
        ttl=ttl,
        seconds=seconds,
    )
