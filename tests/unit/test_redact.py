"""Redaction: secret names, secret shapes, deep structures and log records.

Every test here is plain (no fixtures) so tests/mutate.py can run the module against each mutant of
core/redact.py: a mutant that no test kills is a hole in these tests.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from core.redact import (
    MASK,
    install_log_redaction,
    is_secret_key,
    redact,
    redact_record,
    redact_text,
)

# --- names ------------------------------------------------------------------------------------

SECRET_NAMES = [
    "password",
    "Password",
    "db_password",
    "dbPassword",
    "POSTGRES_PASSWORD",
    "PGPASSWORD",
    "MYSQL_ROOT_PASSWORD",
    "passwd",
    "smtp_passwd",
    "passphrase",
    "SSH_PASSPHRASE",
    "pass",
    "db_pass",
    "pass_file",
    "dbPass",
    "PASS",
    "pwd",
    "db-pwd",
    "secret",
    "client_secret",
    "token",
    "GITHUB_TOKEN",
    "accessToken",
    "apikey",
    "api_key",
    "x-api-key",
    "XApiKey",
    "APIKey",
    "private_key",
    "privateKey",
    "access_key",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "credential",
    "credentials",
    "authorization",
    "Proxy-Authorization",
    "dsn",
    "read_dsn",
    "cookie",
    "Set-Cookie",
    "auth",
    "basic_auth",
    "http-auth",
]

PLAIN_NAMES = [
    "passed",
    "tests_passed",
    "bypass",
    "bypass_cache",
    "compass",
    "passenger",
    "passive",
    "auth_method",
    "authority",
    "author",
    "name",
    "memory",
    "key",
    "api",
    "access",
    "private",
    "needs_network",
    "fields_names",
    "image",
    "status",
    "",
    "_",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name: str) -> None:
    assert is_secret_key(name), name


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name: str) -> None:
    assert not is_secret_key(name), name


# --- text -------------------------------------------------------------------------------------

# (text, the secret that must go, what must remain)
TEXT_CASES = [
    ("POSTGRES_PASSWORD=pg-s3cret-1 x", "pg-s3cret-1", "POSTGRES_PASSWORD=*** x"),
    ("PGPASSWORD=pgpw-22 psql -h db", "pgpw-22", "PGPASSWORD=*** psql -h db"),
    ("GITHUB_TOKEN=ghtok-333", "ghtok-333", "GITHUB_TOKEN=***"),
    ("AWS_SECRET_ACCESS_KEY=wJalr/K7+x", "wJalr/K7+x", "AWS_SECRET_ACCESS_KEY=***"),
    ("export DB_PASS=dbpass-4;", "dbpass-4", "export DB_PASS=***;"),
    ('{"password": "json-pw-5", "name": "web"}', "json-pw-5", '{"password": "***", "name": "web"}'),
    ("{'token': 'py-tok-6'}", "py-tok-6", "{'token': '***'}"),
    ('{\\"password\\": \\"esc-pw-7\\"}', "esc-pw-7", '{\\"password\\": \\"***\\"}'),
    ("password: yaml-pw-8\nuser: bob", "yaml-pw-8", "password: ***\nuser: bob"),
    ("host=db password=libpq-pw-9 user=app", "libpq-pw-9", "host=db password=*** user=app"),
    ('password="cut-off-10', "cut-off-10", "password=***"),
    ("--password=flag-pw-11 --port=5", "flag-pw-11", "--password=*** --port=5"),
    ("ALTER ROLE app PASSWORD 'sql-pw-12' VALID", "sql-pw-12", "PASSWORD '***' VALID"),
    ("CREATE USER a WITH ENCRYPTED PASSWORD E'sql-pw-13'", "sql-pw-13", "PASSWORD E'***'"),
    ("IDENTIFIED BY 'mysql-pw-14';", "mysql-pw-14", "IDENTIFIED BY '***';"),
    ("alter role a password 'it''s-15'", "s-15", "password '***'"),
    ("CREATE ROLE a PASSWORD $$dollar-16$$", "dollar-16", "PASSWORD $$***$$"),
    ("CREATE ROLE a PASSWORD $pw$tagged-17$pw$", "tagged-17", "PASSWORD $pw$***$pw$"),
    ("PASSWORD 'unterminated-18", "unterminated-18", "PASSWORD '***"),
    ("Authorization: Basic dXNlcjpiYXNpYy0xOQ==", "dXNlcjpiYXNpYy0xOQ", "Authorization: Basic ***"),
    ("authorization=Digest dig-20", "dig-20", "authorization=Digest ***"),
    ("Authorization: Token tok-21", "tok-21", "Authorization: Token ***"),
    ("Authorization: Negotiate neg-22", "neg-22", "Authorization: Negotiate ***"),
    ("Authorization: NTLM ntlm-23", "ntlm-23", "Authorization: NTLM ***"),
    ('"Authorization": "Basic b64-24"', "b64-24", '"Authorization": "***"'),
    ("Authorization: Bearer eyJhbG.c.i-25", "eyJhbG.c.i-25", "Bearer ***"),
    ("sent Bearer abc.def-26 upstream", "abc.def-26", "sent Bearer *** upstream"),
    ("Cookie: session=ck-27; theme=dark", "ck-27", "Cookie: ***; theme=dark"),
    ("redis://:redis-pw-28@cache:6379/0", "redis-pw-28", "redis://:***@cache:6379/0"),
    ("postgresql://app:url-pw-29@db:5432/x", "url-pw-29", "postgresql://app:***@db:5432/x"),
    ("amqp://guest:amqp-pw-30@mq/", "amqp-pw-30", "amqp://guest:***@mq/"),
    ("PVEAPIToken=root@pam!lab=1234-abcd-31", "1234-abcd-31", "PVEAPIToken=***"),
    ("hdr PVEAPIToken=root@pam!x=5678-ef-32", "5678-ef-32", "hdr PVEAPIToken=***"),
    ("sk-proj1234567890abc33", "proj1234567890abc33", "sk-***"),
    ("ghp_abcdefghijklmnop0034", "abcdefghijklmnop0034", "ghp_***"),
    ("github_pat_11ABCDEFGHIJKLMNOP35", "11ABCDEFGHIJKLMNOP35", "github_pat_***"),
    ("glpat-abcdefghijklmnop36", "abcdefghijklmnop36", "glpat-***"),
    ("xoxb-1234567890123456-37", "1234567890123456-37", "xoxb-***"),
    ("123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm938", "AAHfiqks", "***"),
    ("GET /bot123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm939/getMe", "AAHfiqks", "/bot***/getMe"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow40\n-----END RSA PRIVATE KEY-----",
        "MIIEow40",
        MASK,
    ),
    ("secret=s41 api_key=k42", "s41", "secret=*** api_key=***"),
    ("x-api-key: k43", "k43", "x-api-key: ***"),
    ("client_credentials=c44", "c44", "client_credentials=***"),
    ("dsn=host=db45", "db45", "dsn=***"),
    ("PBSAPIToken=backup@pbs!ci:5a1e-46", "5a1e-46", "PBSAPIToken=***"),
    ('{"password": "with \\"quote47\\" inside"}', "inside", '{"password": "***"}'),
    ("authorization: basic bG93ZXI6NDg=", "bG93ZXI6NDg", "authorization: basic ***"),
    ("HTTPS://Admin:upper-pw-49@Host/x", "upper-pw-49", "HTTPS://Admin:***@Host/x"),
    ("create role a password $$lower-50$$", "lower-50", "password $$***$$"),
    ("sent bearer lower-bearer-51 on", "lower-bearer-51", "sent bearer *** on"),
    ('password="x token=y52" next', "y52", 'password="***" next'),
    ("api_2_key=digits-53", "digits-53", "api_2_key=***"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), TEXT_CASES)
def test_secret_text(text: str, secret: str, kept: str) -> None:
    out = redact_text(text)
    assert secret not in out, out
    assert kept in out, out


PLAIN_TEXT = [
    "note: all fine, at 12:30 on http://host:8080/x and https://example.org/a@b",
    "tests_passed=12 bypass=on compass: north",
    "image=nginx:1.25 memory=512m status: running",
    "Basic checks passed; the token bucket is full.",
    "PASSWORD NULL",
    "auth_method=md5 key=value",
    "pid 4242 (app@shop, forgotten-tx, idle in transaction 12s)",
]


@pytest.mark.parametrize("text", PLAIN_TEXT)
def test_plain_text_is_untouched(text: str) -> None:
    assert redact_text(text) == text


def test_redaction_is_idempotent() -> None:
    for text, _, _ in TEXT_CASES:
        once = redact_text(text)
        assert redact_text(once) == once, text


# --- structures -------------------------------------------------------------------------------


def test_secret_keys_are_masked_at_every_depth() -> None:
    data = {
        "memory": 512,
        "api_key": "k",
        "nested": [{"password": "p", "name": "web"}, ("x", {"token": "t"})],
        "deep": {"deeper": {"client_secret": {"any": "shape"}, "keep": 1}},
    }
    assert redact(data) == {
        "memory": 512,
        "api_key": MASK,
        "nested": [{"password": MASK, "name": "web"}, ["x", {"token": MASK}]],
        "deep": {"deeper": {"client_secret": MASK, "keep": 1}},
    }


def test_text_is_redacted_at_every_depth() -> None:
    dsn = "postgresql://u:deep-pw@h/db"
    data = {
        "top": dsn,
        "list": [dsn, [dsn]],
        "tuple": (dsn, (dsn,)),
        "set": {dsn},
        "frozen": frozenset([dsn]),
        "dict": {"inner": {"env": ["PGPASSWORD=deep-pw2"]}},
    }
    out = redact(data)
    text = repr(out)
    assert "deep-pw" not in text, text
    masked = "postgresql://u:***@h/db"
    assert out["top"] == masked
    assert out["list"] == [masked, [masked]]
    assert out["tuple"] == [masked, [masked]]
    assert out["set"] == [masked] and out["frozen"] == [masked]
    assert out["dict"] == {"inner": {"env": ["PGPASSWORD=***"]}}


def test_keys_are_redacted_too() -> None:
    out = redact({"postgresql://u:key-pw@h/db": 1, ("not", "text"): 2, 3: "x"})
    assert out == {"postgresql://u:***@h/db": 1, ("not", "text"): 2, 3: "x"}


def test_empty_values_under_secret_keys_say_none_was_set() -> None:
    assert redact({"password": "", "token": None, "secret": 0, "api_key": []}) == {
        "password": "",
        "token": None,
        "secret": 0,
        "api_key": [],
    }
    assert redact({"password": 1234, "token": True}) == {"password": MASK, "token": MASK}


def test_a_non_string_key_that_looks_like_nothing_is_kept() -> None:
    assert redact({7: {"password": "p"}}) == {7: {"password": MASK}}


def test_leaves_are_kept_and_the_input_is_not_changed() -> None:
    data: dict[str, Any] = {"n": 1, "f": 1.5, "b": False, "none": None, "s": "plain"}
    nested = {"password": "p", "list": ["token=t"]}
    data["nested"] = nested
    out = redact(data)
    assert out == {**data, "nested": {"password": MASK, "list": ["token=***"]}}
    assert nested == {"password": "p", "list": ["token=t"]}
    assert redact("token=t") == "token=***" and redact(5) == 5 and redact(None) is None


def test_text_only_redaction_keeps_every_type() -> None:
    data = {
        "tokens_in": 120,
        "password": "plain",
        "nested": [{"token": 5, "note": "PGPASSWORD=p1"}, ("api_key=p2",)],
        "postgresql://u:p3@h/d": {"secret": True},
    }
    assert redact(data, mask_secret_keys=False) == {
        "tokens_in": 120,
        "password": "plain",
        "nested": [{"token": 5, "note": "PGPASSWORD=***"}, ["api_key=***"]],
        "postgresql://u:***@h/d": {"secret": True},
    }


def test_masked_shapes_keep_their_quotes() -> None:
    assert redact_text("password='q'") == "password='***'"
    assert redact_text('password="q"') == 'password="***"'
    assert redact_text("password='") == "password='"  # nothing to mask
    assert redact_text('{\\"password\\": \\"q\\"}') == '{\\"password\\": \\"***\\"}'
    assert redact_text('password="unterminated') == "password=***"


# --- logging ----------------------------------------------------------------------------------


def _record(msg: str, *args: Any, exc: bool = False, stack: str | None = None) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("connect postgresql://u:exc-pw@db/x failed")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, exc_info, sinfo=stack)


def test_log_records_are_redacted() -> None:
    record = redact_record(_record("dsn %s then %d", "postgresql://u:arg-pw@h/d", 5))
    assert record.getMessage() == "dsn postgresql://u:***@h/d then 5"
    record = redact_record(_record("password=%s", "fmt-pw"))
    assert record.getMessage() == "password=***"


def test_clean_log_records_keep_their_arguments() -> None:
    record = redact_record(_record("%s took %d ms", "docker.start", 12))
    assert record.args == ("docker.start", 12) and record.msg == "%s took %d ms"


def test_tracebacks_and_stacks_are_redacted() -> None:
    record = redact_record(_record("boom", exc=True, stack="Stack: token=stack-tok"))
    text = logging.Formatter().format(record)
    assert "exc-pw" not in text and "postgresql://u:***@db/x" in text
    assert "RuntimeError" in text and "stack-tok" not in text and "token=***" in text


def test_a_bad_format_string_still_logs_redacted() -> None:
    record = redact_record(_record("token=%s %s", "only-one-tok"))
    assert "only-one-tok" not in record.getMessage()
    record = redact_record(_record("%s and %s", "one"))
    assert record.getMessage() == "%s and %s [arguments not shown: they do not fit the format]"


def test_an_exception_text_already_made_is_redacted_not_remade() -> None:
    record = _record("boom", exc=True)
    record.exc_text = "made by a handler: token=made-tok"
    assert redact_record(record).exc_text == "made by a handler: token=***"


def test_installed_redaction_covers_every_handler() -> None:
    import core.redact as module

    before_factory = logging.getLogRecordFactory()
    before_installed = module._installed
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("redact-test")
    handler = Collect()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # From the plain factory: one installed earlier in this process (a stack another test
        # ran) would redact on its own and hide a factory that does not.
        logging.setLogRecordFactory(logging.LogRecord)
        module._installed = False
        install_log_redaction()
        install_log_redaction()  # idempotent: one factory, not two
        logger.error("Authorization: Bearer %s", "log-bearer")
        try:
            raise ValueError("GITHUB_TOKEN=log-gh")
        except ValueError:
            logger.exception("failed")
        assert lines and "log-bearer" not in lines[0] and "Bearer ***" in lines[0]
        assert "log-gh" not in lines[1] and "GITHUB_TOKEN=***" in lines[1]
        factory = logging.getLogRecordFactory()
        assert factory is not logging.LogRecord
        install_log_redaction()
        assert logging.getLogRecordFactory() is factory
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(before_factory)
        module._installed = before_installed
