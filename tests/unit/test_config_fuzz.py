"""Property-based fuzzing of the config loader: any YAML file and any HOMELAB_* environment either
loads or fails with a ConfigError naming what is wrong — never another exception (a traceback
instead of exit 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import ConfigError, Settings, load_settings

SECTIONS = [*Settings.model_fields]
KEYS = [
    "name",
    "url",
    "timeout",
    "approvers",
    "mode",
    "host",
    "port",
    "token_file",
    "critical",
    "level",
    "action",
    "providers",
    "model",
    "dsn",
    "address",
    "instances",
    "max_body_bytes",
    "overrides",
    "deadline",
    "chat_id",
    "state_dir",
    "task_queue",
    "verify_ssl",
    "ssh",
]
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["5m", "-1s", "0", "1e9", "auto", "HARD", "x:y/z", "/nonexistent"]),
)
value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
document = st.one_of(
    st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=8), value, max_size=5),
    value,
)
env_names = st.sampled_from(
    [f"HOMELAB_{s.upper()}" for s in SECTIONS]
    + [
        f"HOMELAB_{s.upper()}__{k.upper()}"
        for s in SECTIONS
        for k in ("timeout", "port", "mode", "url")
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(doc=document, env=st.dictionaries(env_names, st.text(max_size=30), max_size=3))
def test_any_config_loads_or_fails_with_a_config_error(
    tmp_path_factory: Any, doc: Any, env: dict[str, str]
) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / "homelab.yaml"
    path.write_text(yaml.safe_dump(doc))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v.replace("\x00", "") for k, v in env.items()})
    try:
        settings_ = load_settings(path)
        assert isinstance(settings_, Settings)
    except ConfigError as exc:
        assert str(exc).strip(), "a config error must say what is wrong"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_garbage_bytes_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "homelab.yaml"
    for raw in [
        b"\xff\xfe\x00garbage",
        b"a: [unclosed",
        b"- just\n- a list\n",
        b"\x00",
        b"key: !!python/object:os.system x",
    ]:
        path.write_bytes(raw)
        with pytest.raises(ConfigError, match=str(path)):
            load_settings(path)
