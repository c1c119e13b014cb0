"""The custom search attributes incidents carry, so the Web UI and CLI can filter on them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SERVICE = SearchAttributeKey.for_keyword("HomelabService")
TARGET = SearchAttributeKey.for_keyword("HomelabTarget")
SEVERITY = SearchAttributeKey.for_keyword("HomelabSeverity")
PHASE = SearchAttributeKey.for_keyword("HomelabPhase")
ALERT = SearchAttributeKey.for_keyword("HomelabAlert")
APPROVAL = SearchAttributeKey.for_keyword("HomelabApproval")

ALL = [SERVICE, TARGET, SEVERITY, PHASE, ALERT, APPROVAL]
