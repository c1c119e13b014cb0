"""Certificates toolset: TLS endpoints (probed from the worker), PEM files and certbot lineages
on a host (read locally or over SSH with the host key checked), and blackbox_exporter's TLS probes.

Reads: ``expiry``, ``chain`` (OpenSSL's verification against the system CAs or ``ca_file``, name
match, weak keys and signatures), ``inventory``, ``acme_status`` (renewal configs and certbot's
log). Write: ``renew`` (certbot or the target's command, then reload, then re-probe). Resources
are ``certs:<target>/<endpoint, file or lineage name>``, or an endpoint's address or URL (what a
blackbox alert's ``instance`` label holds).
"""

# Importing the modules registers their tools on TOOLSET.
from activities.toolsets.certs import reads, renew
from activities.toolsets.certs.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "renew"]
