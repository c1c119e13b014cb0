"""The certificate components, started once for the package: the ACME lab (pebble, its DNS, nginx,
certbot) with one issued lineage, and PEM files from a private CA with every interesting state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.sshd import SshServer
from tests.toolsets.certs.pki import Pki, issue, make_ca
from workers.lab.acme import AcmeLab
from workers.lab.processes import free_port

DOMAIN = "app.lab.test"
LINEAGE = "labcert"


@pytest.fixture(scope="package")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeLab]:
    lab = AcmeLab(tmp_path_factory.mktemp("acme")).start()
    try:
        lab.issue(LINEAGE, DOMAIN)
        yield lab
    finally:
        lab.stop()


@dataclass
class Files:
    pki: Pki
    root: Path

    def path(self, name: str) -> str:
        return str(self.root / f"{name}.pem")


@pytest.fixture(scope="package")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("pem")
    pki = make_ca(root / "ca")
    made = Files(pki, root)
    issue(pki, root / "fine.pem", ["fine.lab.test"], age_days=10, days_left=80)
    issue(pki, root / "expiring.pem", ["expiring.lab.test"], age_days=80, days_left=10)
    issue(pki, root / "critical.pem", ["critical.lab.test"], age_days=87, days_left=3)
    issue(pki, root / "expired.pem", ["expired.lab.test"], age_days=91, days_left=-1)
    issue(pki, root / "weak.pem", ["weak.lab.test"], age_days=10, days_left=80, weak=True)
    issue(pki, root / "other.pem", ["other.lab.test"], age_days=10, days_left=80)
    return made


def file_entries(files: Files) -> list[dict[str, Any]]:
    return [
        {"name": name, "path": files.path(name)}
        for name in ("fine", "expiring", "critical", "expired", "weak")
    ] + [{"name": "mismatch", "path": files.path("other"), "server_name": "mine.lab.test"}]


def web_target(acme: AcmeLab, **overrides: Any) -> dict[str, Any]:
    """The ACME lab host: nginx's TLS site renewed by certbot, verified against pebble's root."""
    target: dict[str, Any] = {
        "name": "web",
        "endpoints": [
            {"name": "app", "address": f"127.0.0.1:{acme.tls_port}", "server_name": DOMAIN}
        ],
        "ca_file": str(acme.root_ca),
        "certbot": acme.certbot_settings(),
        "reload_command": acme.reload_command,
    }
    target.update(overrides)
    return target


def files_target(pem: Files, **overrides: Any) -> dict[str, Any]:
    target: dict[str, Any] = {
        "name": "pem",
        "files": file_entries(pem),
        "endpoints": [{"name": "dead", "address": f"127.0.0.1:{free_port()}"}],
        "ca_file": str(pem.pki.ca_file),
        "timeout": 3,
    }
    target.update(overrides)
    return target


@pytest.fixture(scope="package")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()
