"""The certs and backups target settings refuse what would leak a secret or cannot work."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.config import Settings


def backups(**repo: Any) -> Settings:
    base = {
        "name": "home",
        "kind": "restic",
        "repository": "/srv/restic",
        "password_file": "/etc/pw",
    }
    return Settings(docker=[], backups=[{"name": "nas", "repositories": [{**base, **repo}]}])


def test_backup_repositories_refuse_leaky_or_incomplete_settings() -> None:
    assert backups().backups[0].repositories[0].max_age.total_seconds() == 26 * 3600
    for bad, message in (
        ({"password_file": None}, "needs password or password_file"),
        ({"password": "x"}, "not both"),
        (
            {"repository": "rest:https://user:hunter2@backup.lan/home"},
            "no credentials in the repository URL",
        ),
        ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "looks secret"),
        ({"kind": "borg", "check_read_data_subset": "1/7"}, "restic only"),
        ({"prune": {}}, "must keep something"),
        ({"password_file": "relative/path"}, "should match pattern"),
    ):
        with pytest.raises(ValidationError, match=message):
            backups(**bad)
    borg = backups(kind="borg", password_file=None)  # an unencrypted borg repository
    assert borg.backups[0].repositories[0].password is None
    assert "hunter2" not in repr(backups(password="hunter2", password_file=None))


def test_certificate_targets_refuse_what_cannot_work() -> None:
    ok = Settings(
        docker=[], certs=[{"name": "web", "endpoints": [{"name": "a", "address": "h:443"}]}]
    )
    assert ok.certs[0].endpoints[0].hostname == "h"
    for bad, message in (
        ({}, "give endpoints, files, certbot or blackbox"),
        (
            {
                "endpoints": [{"name": "a", "address": "h:443"}],
                "files": [{"name": "a", "path": "/x.pem"}],
            },
            "unique",
        ),
        (
            {"files": [{"name": "a", "path": "/x"}], "critical_days": 30},
            "critical_days must be below",
        ),
        (
            {"files": [{"name": "a", "path": "/x"}], "reload_command": "systemctl reload nginx"},
            "valid list",
        ),
        (
            {"files": [{"name": "a", "path": "/x"}], "ca_file": "/nonexistent/ca.pem"},
            "does not exist",
        ),
        ({"endpoints": [{"name": "a", "address": "no-port"}]}, "should match pattern"),
    ):
        with pytest.raises(ValidationError, match=message):
            Settings(docker=[], certs=[{"name": "web", **bad}])
