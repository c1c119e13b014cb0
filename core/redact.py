"""Secret redaction for anything that leaves a process: logs, history, change log, LLM prompts, chat.

Two mechanisms: secret-looking *names* (a dict key, or the ``NAME`` of ``NAME=value``,
``"name": "value"`` and ``Name: value`` in text) mask their value, and well-known secret *shapes*
(URL passwords, bearer tokens, API tokens, private keys, SQL ``PASSWORD '...'``) are masked
wherever they appear. ``is_secret_key`` decides what a secret name is, for keys and text alike.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

MASK = "***"

# A name is secret when one of its parts contains one of these (POSTGRES_PASSWORD, dbPassword,
# GITHUB_TOKEN, read_dsn) or two adjacent parts spell one (x-api-key, AWS_SECRET_ACCESS_KEY) ...
SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "credential",
    "authorization",
    "dsn",
    "cookie",
)
# ... or one of its parts is one of these (db_pass, pass_file, dbPass, pwd; not passed, bypass,
# compass) ...
SECRET_PARTS = ("pass", "pwd")
# ... or its last part is this (auth, basic_auth, http-auth; not auth_method).
SECRET_LAST_PARTS = ("auth",)

_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")  # digits separate parts


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a key or variable name holds a secret (its value is masked whatever it is)."""
    parts = [p.lower() for p in _NAME_PARTS.findall(name)]
    pairs = [a + b for a, b in zip(parts, parts[1:], strict=False)]
    return (
        any(word in part for part in parts for word in SECRET_WORDS)
        or any(pair in SECRET_WORDS for pair in pairs)
        or any(part in SECRET_PARTS for part in parts)
        or (bool(parts) and parts[-1] in SECRET_LAST_PARTS)
    )


# NAME=value, NAME: value, "name": "value", 'name'='value' (not a URL's scheme://). The name is
# matched on its own, so a plain name never swallows the pair after it ("note: token=x").
_LEAD = re.compile(
    r"""(?<![\w])(?:\\?["'])?(?P<name>[A-Za-z_][\w.-]*)(?:\\?["'])?\s*(?:=|:(?!//))\s*"""
)
# An HTTP auth scheme (Authorization: Basic xyz) is kept and the credential after it masked.
_VALUE = re.compile(
    r"""(?P<scheme>(?:Basic|Bearer|Digest|Token|Negotiate|NTLM)\s+)?"""
    r"""(?P<value>\\"(?:(?!\\").)*\\"|"(?:[^"\\]|\\.)*"|'[^']*'|["']?[^\s,;&"']+)""",
    re.IGNORECASE,
)
_QUOTES = ('\\"', '"', "'")


def _mask_pairs(text: str) -> str:
    parts: list[str] = []
    done = 0
    for lead in _LEAD.finditer(text):
        if lead.start() < done or not is_secret_key(lead["name"]):
            continue
        value = _VALUE.match(text, lead.end())
        if value is None:
            continue
        found = value["value"]
        quote = next((q for q in _QUOTES if found.endswith(q)), "")
        parts += [text[done : lead.end()], value["scheme"] or "", quote, MASK, quote]
        done = value.end()
    return "".join(parts) + text[done:]


_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host and scheme://:password@host  ->  scheme://user:***@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@\s]+(@)", re.IGNORECASE), rf"\1{MASK}\2"),
    # SQL: PASSWORD 'x', ENCRYPTED PASSWORD E'x', IDENTIFIED BY 'x', PASSWORD $$x$$
    (
        re.compile(r"(\b(?:PASSWORD|IDENTIFIED\s+BY)\s+E?')(?:[^']|'')*('?)", re.IGNORECASE),
        rf"\1{MASK}\2",
    ),
    (re.compile(r"(\bPASSWORD\s+)(\$\w*\$).*?\2", re.IGNORECASE | re.S), rf"\1\2{MASK}\2"),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1{MASK}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), f"sk-{MASK}"),
    (re.compile(r"\b(gh[pousr]_|github_pat_|glpat-|xox[abprs]-)[A-Za-z0-9_-]{16,}"), rf"\1{MASK}"),
    # Telegram bot tokens, also inside a Bot API URL path (/bot123456:AA...)
    (re.compile(r"(?<![0-9])\d{6,12}:[A-Za-z0-9_-]{30,}\b"), MASK),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        MASK,
    ),
]


def redact_text(text: str) -> str:
    """``text`` with every secret name's value and every secret shape masked."""
    text = _mask_pairs(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, *, mask_secret_keys: bool = True) -> Any:
    """A deep copy of ``value`` with secret keys' values masked and secrets removed from text.

    Keys are redacted like any text (a DSN can be a key); an empty value under a secret key is
    kept (it says "no password set"); tuples and sets come back as lists (JSON has no others).
    ``mask_secret_keys=False`` redacts text only, keeping every value's type: for a model that
    must validate again (``tokens_in`` stays a number).
    """
    if isinstance(value, Mapping):
        return {
            _redact_key(k): (
                MASK
                if mask_secret_keys and isinstance(k, str) and is_secret_key(k) and v
                else redact(v, mask_secret_keys=mask_secret_keys)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, mask_secret_keys=mask_secret_keys) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _redact_key(key: Any) -> Any:
    return redact_text(key) if isinstance(key, str) else key


# --- logging ---------------------------------------------------------------------------------

_TRACEBACKS = logging.Formatter()


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in a log record's message, exception text and stack, before any handler."""
    try:
        message = record.getMessage()
        fits = True
    except Exception:  # a format string that does not fit its arguments: drop the arguments
        message, fits = f"{record.msg} [arguments not shown: they do not fit the format]", False
    clean = redact_text(message)
    if clean != message or not fits:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


_installed = False


def install_log_redaction() -> None:
    """Every log record of this process is redacted when it is made, whatever handler takes it
    (ours, uvicorn's, pytest's): messages, arguments, tracebacks. Idempotent."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
