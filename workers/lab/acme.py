"""An ACME lab on loopback: pebble (Let's Encrypt's test CA), pebble-challtestsrv as its DNS
(every name resolves to 127.0.0.1), nginx serving the HTTP-01 webroot and a TLS site, and certbot
with its own config, work and log directories.

certbot issues from pebble over real HTTP-01 (pebble fetches the challenge from nginx); nginx's TLS
site serves ``live/<name>`` of a lineage after ``issue``; ``kill -HUP <nginx>`` reloads it. pebble
regenerates its root at every start, so ``root_ca`` is fetched from its management API.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from workers.lab.processes import Proc, free_ports, wait_for


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if not found:
        raise RuntimeError(
            f"{name} is not installed ({package}; deploy/scripts/install-system-deps.sh)"
        )
    return found


def self_signed(cert: Path, key: Path, names: list[str], days: float) -> None:
    """A throwaway self-signed pair (pebble's listener, nginx before the first issuance)."""
    private = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class AcmeLab:
    """``start()`` brings up pebble, its DNS and nginx; ``issue()`` runs certbot certonly."""

    def __init__(self, root: Path, validity_seconds: int = 3600) -> None:
        self.root = root
        self.validity = validity_seconds
        self.procs: list[Proc] = []
        self.nginx: Proc | None = None
        (
            self.acme_port,
            self.mgmt_port,
            self.http_port,
            self.tls_port,
            self.dns_port,
            self.chall_port,
        ) = free_ports(6)
        self.le = root / "le"
        self.webroot = root / "nginx" / "webroot"
        self.listener_cert = root / "pebble" / "cert.pem"
        self.root_ca = root / "pebble" / "root.pem"

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def certbot_env(self) -> dict[str, str]:
        """certbot trusts pebble's listener (a private ACME CA, as with step-ca)."""
        return {"REQUESTS_CA_BUNDLE": str(self.listener_cert)}

    def certbot_settings(self) -> dict[str, object]:
        return {
            "config_dir": str(self.le / "config"),
            "work_dir": str(self.le / "work"),
            "logs_dir": str(self.le / "logs"),
            "env": self.certbot_env,
            "timeout": "2m",
        }

    @property
    def reload_command(self) -> list[str]:
        assert self.nginx is not None
        return ["kill", "-HUP", str(self.nginx.pid)]

    def start(self) -> AcmeLab:
        """Everything up, or nothing left running (a failed start stops what it started)."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> AcmeLab:
        pebble_dir = self.root / "pebble"
        pebble_dir.mkdir(parents=True, exist_ok=True)
        self_signed(self.listener_cert, pebble_dir / "key.pem", ["127.0.0.1", "localhost"], 30)
        config = pebble_dir / "pebble-config.json"
        config.write_text(
            '{"pebble": {'
            f'"listenAddress": "127.0.0.1:{self.acme_port}", '
            f'"managementListenAddress": "127.0.0.1:{self.mgmt_port}", '
            f'"certificate": "{self.listener_cert}", "privateKey": "{pebble_dir / "key.pem"}", '
            f'"httpPort": {self.http_port}, "tlsPort": {self.tls_port}, '
            '"ocspResponderURL": "", "externalAccountBindingRequired": false, '
            f'"certificateValidityPeriod": {self.validity}}}}}'
        )
        self.procs.append(
            Proc.spawn(
                "challtestsrv",
                [
                    _binary("pebble-challtestsrv", "pebble"),
                    "-defaultIPv6",
                    "",
                    "-dns01",
                    f"127.0.0.1:{self.dns_port}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-management",
                    f"127.0.0.1:{self.chall_port}",
                ],
                pebble_dir / "challtestsrv.log",
            )
        )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",  # no random 0-15 s wait before each validation
            "PEBBLE_WFE_NONCEREJECT": "0",  # no rejected nonces (5 % by default)
            "PEBBLE_AUTHZREUSE": "0",  # every order is validated: a broken webroot fails
        }
        self.procs.append(
            Proc.spawn(
                "pebble",
                [
                    _binary("pebble", "pebble"),
                    "-config",
                    str(config),
                    "-dnsserver",
                    f"127.0.0.1:{self.dns_port}",
                ],
                pebble_dir / "pebble.log",
                env=env,
            )
        )

        def ready() -> bool:
            answer = httpx.get(self.directory, verify=self._trust(), timeout=1, trust_env=False)
            return answer.status_code == 200

        wait_for(ready, 20, "pebble")
        self._start_nginx()
        self.fetch_root()
        return self

    def _trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.listener_cert))

    def fetch_root(self) -> Path:
        """pebble's root CA of this run (it verifies every certificate pebble issued)."""
        answer = httpx.get(
            f"https://127.0.0.1:{self.mgmt_port}/roots/0",
            verify=self._trust(),
            timeout=5,
            trust_env=False,
        )
        answer.raise_for_status()
        self.root_ca.write_text(answer.text)
        return self.root_ca

    def _start_nginx(self) -> None:
        base = self.root / "nginx"
        boot = base / "boot"
        for sub in ("webroot", "boot", "logs", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self_signed(boot / "fullchain.pem", boot / "privkey.pem", ["boot.lab.test"], 1)
        (self.webroot / "index.html").write_text("acme lab\n")
        link = base / "cert"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(boot)
        temp = base / "tmp"
        # Started as root, nginx's workers drop to nobody, who cannot read a 0700 test directory.
        user = "user root root;" if os.geteuid() == 0 else ""
        (base / "nginx.conf").write_text(
            f"""
{user}
worker_processes 1;
pid {base / "nginx.pid"};
error_log {base / "logs" / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
  access_log {base / "logs" / "access.log"};
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  server {{ listen 127.0.0.1:{self.http_port}; root {self.webroot}; }}
  server {{
    listen 127.0.0.1:{self.tls_port} ssl;
    ssl_certificate {link / "fullchain.pem"};
    ssl_certificate_key {link / "privkey.pem"};
    root {self.webroot};
  }}
}}
"""
        )
        self.nginx = Proc.spawn(
            "nginx",
            [
                _binary("nginx", "nginx"),
                "-e",
                str(base / "logs" / "error.log"),
                "-p",
                str(base),
                "-c",
                str(base / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            base / "nginx.log",
        )
        self.procs.append(self.nginx)
        wait_for(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{self.http_port}/", timeout=1, trust_env=False
                ).status_code
                == 200
            ),
            15,
            "nginx",
        )

    def certbot(self, *args: str) -> subprocess.CompletedProcess[str]:
        """certbot with the lab's directories and trust (never the system's /etc/letsencrypt)."""
        argv = [
            _binary("certbot", "certbot"),
            *args,
            "--non-interactive",
            "--config-dir",
            str(self.le / "config"),
            "--work-dir",
            str(self.le / "work"),
            "--logs-dir",
            str(self.le / "logs"),
        ]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.certbot_env},
        )

    def issue(self, cert_name: str, domain: str) -> Path:
        """A certificate from pebble over HTTP-01; nginx's TLS site serves it from now on."""
        done = self.certbot(
            "certonly",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--server",
            self.directory,
            "--webroot",
            "-w",
            str(self.webroot),
            "-d",
            domain,
            "--cert-name",
            cert_name,
        )
        if done.returncode != 0:
            raise RuntimeError(f"certbot certonly failed: {done.stdout}{done.stderr}")
        live = self.le / "config" / "live" / cert_name
        link = self.root / "nginx" / "cert"
        link.unlink()
        link.symlink_to(live)
        self.serve_latest(cert_name)
        return live

    def serve_latest(self, cert_name: str) -> None:
        """Reload nginx and wait until it serves the lineage's current certificate (twice in a
        row: old workers may answer once more after a HUP)."""
        live = self.le / "config" / "live" / cert_name
        self.reload_nginx()
        issued = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes()).serial_number
        streak = [0]

        def serving() -> bool:
            streak[0] = streak[0] + 1 if self.served_serial() == issued else 0
            return streak[0] >= 2

        wait_for(serving, 15, "nginx serving the new certificate")

    def served_serial(self) -> int:
        """The serial of the certificate nginx's TLS site presents now."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="lab.test") as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def reload_nginx(self) -> None:
        assert self.nginx is not None
        os.kill(self.nginx.pid, signal.SIGHUP)

    def renewal_conf(self, cert_name: str) -> Path:
        return self.le / "config" / "renewal" / f"{cert_name}.conf"

    def break_webroot(self, cert_name: str) -> str:
        """Point the lineage's HTTP-01 webroot where nginx does not serve (renewals fail);
        returns the original config to restore."""
        conf = self.renewal_conf(cert_name)
        original = conf.read_text()
        wrong = self.root / "not-served"
        wrong.mkdir(exist_ok=True)
        conf.write_text(original.replace(str(self.webroot), str(wrong)))
        return original

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
