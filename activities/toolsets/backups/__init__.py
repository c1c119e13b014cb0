"""Backups toolset: restic and borg repositories in one toolset (a repository's ``kind``).

Both do the same jobs (snapshots and their age, check, stats, locks, encryption, unlock, prune,
read-all-data) and answer the same alerts, so the runbooks and findings are shared and only the
argument vectors and output parsing differ (``restic.py``, ``borg.py``). Commands run on the
target's host, locally or over SSH with the host key checked; passwords never reach an argv.
Resources are ``backups:<target>/<repository name>``.
"""

# Importing the modules registers their tools on TOOLSET.
from activities.toolsets.backups import reads, writes
from activities.toolsets.backups.client import TOOLSET, probe

__all__ = ["TOOLSET", "probe", "reads", "writes"]
