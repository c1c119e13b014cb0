"""A local CA, a short-lived server certificate, and nginx serving it (the lab's TLS expiry target)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from workers.lab.processes import Proc, wait_for


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_certificates(root: Path, days: int) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a server cert for localhost valid ``days`` days."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        root / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = root / "server.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost,DNS:lab.local,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=homelab-agents lab CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=lab.local",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        str(days),
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


def start_nginx(root: Path, port: int, cert: Path, key: Path, ca: Path) -> Proc:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError(
            "nginx is not installed (deploy/scripts/install-system-deps.sh installs it)"
        )
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("client", "proxy", "fastcgi", "uwsgi", "scgi", "www"):
        (root / sub).mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text("lab tls ok\n")
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {root / "client"};
  proxy_temp_path {root / "proxy"};
  fastcgi_temp_path {root / "fastcgi"};
  uwsgi_temp_path {root / "uwsgi"};
  scgi_temp_path {root / "scgi"};
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name lab.local localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root / "www"};
    location /nginx_status {{ stub_status; }}
  }}
}}
"""
    )
    proc = Proc.spawn(
        "nginx",
        [
            nginx,
            "-e",
            str(root / "error.log"),
            "-p",
            str(root),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ],
        root / "nginx.log",
    )

    def ready() -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        import http.client

        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        finally:
            connection.close()

    wait_for(ready, 15, "nginx")
    return proc
