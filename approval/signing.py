"""Proof of who decided: Ed25519 signatures over exactly what an approval decides.

A decision names an approver; only a signature made with that approver's private key (or, for
Telegram users, the bot's key — the bot signs for the user it authenticated) proves it. The
signature covers the workflow, its run, the approval, the binding of the change that was shown
(the hash of its exact preview and facts) and the verdict, so it cannot be replayed onto another
incident, another run, another action or a changed preview. The worker holds only public keys:
reading its configuration never lets anyone sign.

Keys are raw Ed25519 keys, base64-encoded: a private key file holds one line, a public key is the
line ``homelab-agents approvers add`` prints (also written next to the private key as ``.pub``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from core.models import ApprovalRequest

TELEGRAM_SIGNER = "telegram-bot"
"""The signer id of the Telegram bot, which signs for the Telegram users it authenticated."""


class SigningKeyError(ValueError):
    """A key file or key text that is not an Ed25519 key (the message says which)."""


def message(
    workflow_id: str, run_id: str, approval_id: str, binding_: str, approve: bool, approver: str
) -> bytes:
    """The exact bytes a decision's signature covers."""
    verdict = "approve" if approve else "deny"
    return "\n".join(
        [
            "homelab-agents decision v1",
            workflow_id,
            run_id,
            approval_id,
            binding_,
            verdict,
            approver,
        ]
    ).encode()


def generate() -> tuple[str, str]:
    """A new key pair as (private, public) base64 text."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def _raw(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise SigningKeyError(f"{what} is not base64: {exc}") from None
    if len(raw) != 32:
        raise SigningKeyError(f"{what} is not an Ed25519 key ({len(raw)} bytes, expected 32)")
    return raw


def private_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "private key"))


def public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(text, "public key"))


def public_of(private: str) -> str:
    raw = private_key(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(private: str, payload: bytes) -> str:
    return base64.b64encode(private_key(private).sign(payload)).decode()


def verify(public: str, payload: bytes, proof: str) -> bool:
    try:
        signature = base64.b64decode(proof, validate=True)
        public_key(public).verify(signature, payload)
    except (InvalidSignature, ValueError, SigningKeyError):
        return False
    return True


def read_private(path: Path) -> str:
    """A private key file: refused if others can read it (a shared key proves nothing)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise SigningKeyError(f"key file {path} is readable by others (chmod 600 {path})")
    private_key(text)
    return text


def write_pair(directory: Path, name: str) -> tuple[Path, str]:
    """Create ``name.key`` (0600) and ``name.pub`` in ``directory``; refuses to overwrite."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = directory / f"{name}.key"
    if key_path.exists():
        raise SigningKeyError(f"{key_path} exists already: remove it first to replace the key")
    private, public = generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(private + "\n")
    (directory / f"{name}.pub").write_text(public + "\n")
    return key_path, public


def sign_decision(
    private: str,
    workflow_id: str,
    request: ApprovalRequest,
    approve: bool,
    approver: str,
    signer: str = "",
) -> dict[str, str]:
    """The fields that bind a decision to ``request`` and prove it: run, binding, signer, proof."""
    payload = message(workflow_id, request.run_id, request.id, request.binding, approve, approver)
    return {
        "run_id": request.run_id,
        "binding": request.binding,
        "signer": signer or approver,
        "proof": sign(private, payload),
    }


def key_for(keys_dir: Path, name: str, explicit: Path | None = None) -> str:
    """The private key ``name`` signs with: ``explicit``, else ``keys_dir/NAME.key``."""
    path = explicit or keys_dir / f"{name}.key"
    if not path.exists():
        raise SigningKeyError(
            f"no private key for {name!r} at {path}: create one with "
            f"`homelab-agents approvers add {name}` (or pass --key-file)"
        )
    return read_private(path)


def ensure_key(keys_dir: Path, name: str, explicit: Path | None = None) -> str:
    """``key_for``, creating the pair in ``keys_dir`` on first use (the bot's own key: its
    public half next to it is what the worker trusts)."""
    if explicit is None and not (keys_dir / f"{name}.key").exists():
        write_pair(keys_dir, name)
    return key_for(keys_dir, name, explicit)
