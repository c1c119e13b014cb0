#!/usr/bin/env bash
# Installs the system packages the tests and the demo lab run for real: a Docker engine
# (dockerd, run on a private socket by the tests), busybox (the lab image), PostgreSQL,
# promtool (from the prometheus package) for the shipped alert rules, logrotate for the hosts tools,
# Unbound, and the services the Redis, proxy and broker toolsets act on (Redis, nginx, Caddy,
# HAProxy, RabbitMQ, NATS, Mosquitto).
# Unbound, pebble + certbot (ACME), restic and borgbackup; debootstrap (the image's local Debian
# base) and Chromium (headless, the Web UI screenshots).
# Debian/Ubuntu, as root. Safe to re-run: installs only what is missing.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool checks the shipped rules
# the demo lab and its scenario tests: the monitoring stack, exporters, nginx, loop-mounted ext4
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
command -v prometheus-postgres-exporter >/dev/null 2>&1 || need+=(prometheus-postgres-exporter)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# the Proxmox tests: a real sshd on loopback runs `pct exec` for the container-service tools
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
# the hosts toolset's commands (over that sshd): logrotate, ip, ps; amtool comes with alertmanager
command -v logrotate >/dev/null 2>&1 || need+=(logrotate)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ps >/dev/null 2>&1 || need+=(procps)
# the Unbound toolset's tests: real resolvers (unbound, unbound-control, unbound-checkconf)
command -v unbound-control >/dev/null 2>&1 || need+=(unbound)
# Home Assistant core runs in its own venv (make ha-venv), built with python3 -m venv
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# the Redis, proxy and broker toolsets' tests (each server runs on loopback) and the lab's Redis
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus-redis-exporter >/dev/null 2>&1 || need+=(prometheus-redis-exporter)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
[ -x /usr/sbin/nats-server ] || need+=(nats-server)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# certificates: pebble (an ACME test CA) and certbot issue to nginx; backups: restic and borg
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v certbot >/dev/null 2>&1 || need+=(certbot)
command -v restic >/dev/null 2>&1 || need+=(restic)
command -v borg >/dev/null 2>&1 || need+=(borgbackup)
# the image benchmark builds its Debian base here (debootstrap, then docker import); the Web UI
# screenshots come from headless Chromium
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "need root to install: ${need[*]}" >&2
  exit 1
fi
# No init system here: keep apt from starting daemons on their default ports.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${need[@]}"; then
  apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
fi
[ "$created_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
echo "installed: ${need[*]}"
