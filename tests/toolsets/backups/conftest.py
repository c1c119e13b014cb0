"""Real restic and borg repositories, made once for the package: fresh ones, one whose newest
snapshot is 10 days old, damaged ones, an unencrypted borg repository; per-test copies for the
tests that change a repository."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.sshd import SshServer
from workers.lab.backups import LabRepo, make_repo

PASSWORD = "correct horse battery staple"
OLD = "2026-01-10 10:00:00"


def days_ago(days: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - days * 86400))


@dataclass
class Repos:
    root: Path
    source: Path
    restic: LabRepo  # template: an empty initialised restic repository
    home: LabRepo  # restic: a backup an hour ago and one 30 days ago
    old: LabRepo  # restic: newest snapshot 10 days old
    damaged: LabRepo  # restic: a pack overwritten (only --read-data notices)
    media: LabRepo  # borg: an archive an hour ago and one 30 days ago
    broken: LabRepo  # borg: a segment overwritten (borg check notices)
    plain: LabRepo  # borg: unencrypted

    def copy(self, repo: LabRepo, name: str) -> LabRepo:
        return repo.clone(self.root / name)


@pytest.fixture(scope="package")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    root = tmp_path_factory.mktemp("repos")
    source = root / "src"
    source.mkdir()
    (source / "notes.txt").write_text("homelab notes\n" * 100)
    (source / "data.bin").write_bytes(os.urandom(1_500_000))  # a real data pack to damage
    restic = make_repo("restic", root / "restic-template", PASSWORD)
    home = restic.clone(root / "home")
    home.backup(source, days_ago(30), host="nas", tag="daily")
    home.backup(source, days_ago(1 / 24), host="nas", tag="daily")
    old = restic.clone(root / "old")
    old.backup(source, days_ago(10), host="nas", tag="daily")
    damaged = restic.clone(root / "damaged")
    damaged.backup(source, days_ago(1 / 24))
    damaged.corrupt()
    media = make_repo("borg", root / "media", PASSWORD)
    media.backup(source, days_ago(30), host="nas")
    media.backup(source, days_ago(1 / 24), host="nas")
    broken = make_repo("borg", root / "broken", PASSWORD)
    broken.backup(source, days_ago(1 / 24), host="nas")
    broken.corrupt()
    plain = make_repo("borg", root / "plain", PASSWORD, encryption="none")
    plain.backup(source, days_ago(1 / 24), host="nas")
    return Repos(root, source, restic, home, old, damaged, media, broken, plain)


def repo_config(repo: LabRepo, name: str, **overrides: Any) -> dict[str, Any]:
    """A repository as the backups target configures it (password from the file on the host)."""
    config: dict[str, Any] = {
        "name": name,
        "kind": repo.kind,
        "repository": str(repo.path),
        "password_file": str(repo.password_file),
        "env": dict(repo.env),
    }
    config.update(overrides)
    return config


def target(*repositories: dict[str, Any], name: str = "nas", **overrides: Any) -> dict[str, Any]:
    return {"name": name, "repositories": list(repositories), **overrides}


@pytest.fixture(scope="package")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()
