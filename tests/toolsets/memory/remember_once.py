"""Store one incident in the incident memory and exit (the restart test's other process).

python -m tests.toolsets.memory.remember_once <settings.json> <state.json> <run id>
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from activities.memory.activities import MemoryActivities
from activities.store import Store
from core.config import Settings
from core.models import IncidentState


async def main(settings_file: str, state_file: str, run_id: str) -> None:
    settings = Settings(**json.loads(Path(settings_file).read_text()))
    state = IncidentState.model_validate_json(Path(state_file).read_text())
    store = Store(settings.store_url)
    done = await MemoryActivities(settings, store).store_incident(state, run_id)
    print(done.model_dump_json())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
