"""What a certificate says, read with ``cryptography``: names, validity, key, signature, and how
close it is to expiry against the target's thresholds (shrunk for short-lived certificates)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

WEAK_HASHES = ("md5", "sha1")


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order (none: an empty list)."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    return list(x509.load_pem_x509_certificates(data))


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [str(n) for n in ext.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def key_description(cert: x509.Certificate) -> tuple[str, int]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 448
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0


def signature_hash(cert: x509.Certificate) -> str:
    algorithm = cert.signature_hash_algorithm
    return algorithm.name if algorithm is not None else "none"


def must_staple(cert: x509.Certificate) -> bool:
    try:
        feature = cert.extensions.get_extension_for_class(x509.TLSFeature).value
    except x509.ExtensionNotFound:
        return False
    return x509.TLSFeatureType.status_request in feature


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def weaknesses(cert: x509.Certificate, min_rsa_bits: int) -> list[str]:
    """Weak keys and signatures: clients reject or warn about these."""
    found = []
    kind, bits = key_description(cert)
    if kind == "RSA" and bits < min_rsa_bits:
        found.append(f"RSA key of {bits} bits (< {min_rsa_bits})")
    if kind.startswith("EC") and bits < 256:
        found.append(f"{kind} key of {bits} bits (< 256)")
    if kind == "DSA":
        found.append("DSA key")
    digest = signature_hash(cert)
    if digest in WEAK_HASHES and not is_self_signed(cert):
        found.append(f"{digest.upper()} signature")
    return found


def covers(cert: x509.Certificate, hostname: str) -> bool:
    """Whether the SANs (else the CN) cover ``hostname`` (one-label wildcards, IPs exactly)."""
    names = sans(cert)
    if not names:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names = [str(common[0].value)] if common else []
    host = hostname.rstrip(".").lower()
    try:
        wanted_ip = ipaddress.ip_address(host)
    except ValueError:
        wanted_ip = None
    for name in names:
        if wanted_ip is not None:
            try:
                if ipaddress.ip_address(name) == wanted_ip:
                    return True
            except ValueError:
                continue
            continue
        pattern = name.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            if host.split(".", 1)[1] == pattern[2:] and host.split(".", 1)[0]:
                return True
    return False


@dataclass(frozen=True)
class Thresholds:
    warn_days: float
    critical_days: float

    def for_lifetime(self, lifetime_days: float) -> tuple[float, float]:
        """(warn, critical) days: at most a third and a tenth of the lifetime, so a 6-day or a
        1-hour certificate is not "expiring" from the moment it is issued."""
        return (
            min(self.warn_days, lifetime_days / 3),
            min(self.critical_days, lifetime_days / 10),
        )


def status(days_left: float, lifetime_days: float, thresholds: Thresholds) -> str:
    warn, critical = thresholds.for_lifetime(lifetime_days)
    if days_left <= 0:
        return "expired"
    if days_left <= critical:
        return "critical"
    if days_left <= warn:
        return "warning"
    return "ok"


def facts(
    cert: x509.Certificate, thresholds: Thresholds, min_rsa_bits: int, now: datetime | None = None
) -> dict[str, Any]:
    """One certificate as evidence: names, validity, key, signature, days left and status."""
    now = now or datetime.now(UTC)
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    lifetime = (not_after - not_before).total_seconds() / 86400
    days_left = round((not_after - now).total_seconds() / 86400, 3)
    warn, critical = thresholds.for_lifetime(lifetime)
    kind, bits = key_description(cert)
    return {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "sans": sans(cert),
        "serial": format(cert.serial_number, "X"),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "lifetime_days": round(lifetime, 3),
        "days_left": days_left,
        "warn_days": round(warn, 3),
        "critical_days": round(critical, 3),
        "status": status(days_left, lifetime, thresholds),
        "key": f"{kind} {bits}".strip(),
        "signature_hash": signature_hash(cert),
        "self_signed": is_self_signed(cert),
        "must_staple": must_staple(cert),
        "weak": weaknesses(cert, min_rsa_bits),
    }
