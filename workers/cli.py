"""The `homelab-agents` command line.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error. Every listing takes ``--json``.
Client commands end with ``os._exit`` after flushing: the Temporal client can crash the interpreter
at exit (sdk-python#300), which must never turn a success into a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from core.config import ConfigError, Settings, load_settings
from core.models import IncidentState
from core.redact import install_log_redaction, redact_text
from workers.demo import demo_app

T = TypeVar("T")

app = typer.Typer(
    name="homelab-agents",
    help="Durable, policy-gated incident response for a self-hosted lab, on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
incidents_app = typer.Typer(help="List incidents.", no_args_is_help=True)
incident_app = typer.Typer(help="Look at one incident.", no_args_is_help=True)
tools_app = typer.Typer(help="The tool catalog.", no_args_is_help=True)
policy_app = typer.Typer(
    help="Explain policy decisions; what learning suggests and restricts.", no_args_is_help=True
)
memory_app = typer.Typer(help="The incident memory (Qdrant).", no_args_is_help=True)
schedules_app = typer.Typer(help="Temporal Schedules of the proactive jobs.", no_args_is_help=True)
report_app = typer.Typer(help="Reports from the store.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(incident_app, name="incident")
app.add_typer(tools_app, name="tools")
app.add_typer(policy_app, name="policy")
app.add_typer(demo_app, name="demo")
app.add_typer(schedules_app, name="schedules")
app.add_typer(report_app, name="report")
app.add_typer(memory_app, name="memory")

# Piped output gets a wide console so tables stay one row per line (rich assumes 80 columns).
out = Console(width=None if sys.stdout.isatty() else 220)
err = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


class State:
    config: str | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


state = State()


@app.callback()
def main_options(
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        envvar="HOMELAB_CONFIG",
        help="YAML config (default ./homelab.yaml).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    state.config = config
    install_log_redaction()  # every process (worker, intake, bot, CLI) starts here
    state.settings  # noqa: B018 - fail fast (exit 2) on a bad config, whatever the command
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "temporalio.worker._workflow_instance", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(redact_text(message))}", highlight=False)
    return typer.Exit(code)


def say(*lines: str) -> None:
    """Print data lines verbatim (never parsed as rich markup)."""
    for line in lines:
        out.print(line, markup=False, highlight=False)


def cells(*values: object) -> list[Text]:
    """Table cells as plain text: data (previews, names) is never parsed as rich markup."""
    return [Text(str(v)) for v in values]


def dump(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


async def _client_and_store() -> tuple[Any, Any]:
    from activities.store import Store
    from workers.temporal_client import address, connect

    settings = state.settings
    try:
        client = await asyncio.wait_for(connect(settings), timeout=10)
    except Exception as exc:
        raise fail(f"cannot reach Temporal at {address(settings)}: {exc}") from exc
    return client, Store(settings.store_url)


def open_store() -> Any:
    """The store as this process uses it: the run-time role (and the owner, when configured, only
    for ``migrate``)."""
    from activities.store import Store

    return Store(state.settings.store_url)


def migrate_as_owner() -> list[int]:
    """With ``store.owner_url`` set, migrate and re-grant before a process starts, so the run-time
    role never needs DDL. Without it, nothing here: the store migrates on first use."""
    from activities.store import Store

    owner = state.settings.store_owner_url
    if owner is None:
        return []
    store = Store(state.settings.store_url, owner_url=owner)
    try:
        return store.migrate()
    except Exception as exc:
        raise fail(f"store migration failed: {exc}") from exc
    finally:
        store.close()


@app.command()
def migrate(as_json: bool = JsonOpt) -> None:
    """Apply the store's pending migrations (as store.owner_url when set) and re-grant the run-time
    role; safe to run again."""
    from activities.store import Store

    settings = state.settings
    owner = settings.store_owner_url
    store = Store(settings.store_url, owner_url=owner)
    try:
        applied = store.migrate()
        version = store.schema_version()
    except Exception as exc:
        raise fail(f"store migration failed: {exc}") from exc
    finally:
        store.close()
    if as_json:
        dump({"applied": applied, "version": version, "as_owner": owner is not None})
        return
    say(
        f"store at schema version {version}; applied {applied or 'nothing'}"
        + ("; run-time role re-granted" if owner and store.dialect == "postgresql" else "")
    )


# --- processes ---------------------------------------------------------------------------------


@app.command()
def up() -> None:
    """Run everything: Temporal dev server (unless temporal.address is set), worker, intake, watcher."""
    from workers.devserver import DevServerError
    from workers.stack import run_up

    migrate_as_owner()
    try:
        run(run_up(state.settings))
    except DevServerError as exc:
        raise fail(str(exc)) from exc


@app.command()
def worker(
    site: str = typer.Option(
        "", "--site", help="serve only this site's targets, on its own task queue"
    ),
) -> None:
    """Run only the Temporal worker (workflows and activities), or a site's worker."""
    from workers.stack import run_worker

    if site and site not in state.settings.sites():
        known = ", ".join(state.settings.sites()) or "none"
        raise fail(f"no target is at site {site!r} (sites in the config: {known})", 2)
    if not site:
        migrate_as_owner()
    run(run_worker(state.settings, site))


@app.command()
def intake() -> None:
    """Run only the intake HTTP server and the Docker events watcher."""
    from workers.stack import run_intake

    migrate_as_owner()
    run(run_intake(state.settings))


@app.command()
def bot() -> None:
    """Run only the Telegram bot (approval buttons, commands); one bot process per token."""
    from workers.telegram import run_bot

    if not state.settings.telegram.enabled:
        raise fail(
            "telegram is not configured: set telegram.token (or token_file) and telegram.chat_id",
            2,
        )
    migrate_as_owner()
    try:
        run(run_bot(state.settings))
    except RuntimeError as exc:
        raise fail(str(exc)) from exc


@app.command()
def doctor(as_json: bool = JsonOpt) -> None:
    """Check Temporal, the store, the runbooks and every configured target."""
    from activities.toolsets import default_catalog
    from workers.doctor import run_doctor

    findings = run(run_doctor(state.settings, default_catalog()))
    if as_json:
        dump([f.model_dump() for f in findings])
    else:
        table = Table("check", "target", "status", "detail")
        for f in findings:
            status = (
                "[yellow]warn[/]" if f.warning else ("[green]ok[/]" if f.ok else "[red]FAIL[/]")
            )
            table.add_row(*cells(f.check, f.target), Text.from_markup(status), *cells(f.detail))
        out.print(table)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


# --- incidents ---------------------------------------------------------------------------------


@incidents_app.command("list")
def incidents_list(
    as_json: bool = JsonOpt,
    limit: int = typer.Option(50, min=1, max=1000),
    open_only: bool = typer.Option(False, "--open", help="Only running incidents."),
) -> None:
    """Incidents, newest first, from Temporal's visibility store."""
    from workers.operations import list_incidents

    async def go() -> list[Any]:
        client, _ = await _client_and_store()
        return await list_incidents(client, limit, open_only)

    rows = run(go())
    if as_json:
        dump([r.model_dump(mode="json") for r in rows])
        return
    table = Table("workflow id", "alert", "target", "phase", "approval", "status", "started")
    for r in rows:
        table.add_row(
            *cells(
                r.workflow_id,
                r.alert,
                r.target,
                r.phase,
                r.approval,
                r.status,
                r.started.strftime("%Y-%m-%d %H:%M:%S") if r.started else "",
            )
        )
    out.print(table)


def incident_lines(s: IncidentState) -> list[str]:
    """``incident show`` as text: values as a user reads them, never Python reprs."""
    lines = [
        f"{s.workflow_id}  {s.alert.name}  phase {s.phase.value}"
        f"  outcome {s.outcome.value if s.outcome else '-'}"
    ]
    if s.triage:
        lines.append(
            f"target {s.triage.target}  severity {s.triage.severity}"
            f"{'  CRITICAL' if s.triage.critical else ''}  runbook "
            f"{s.triage.runbook.name if s.triage.runbook else '-'}"
        )
    if s.joined_to:
        lines.append(f"joined {s.joined_to} (the incident that owns this problem)")
    lines += [
        f"  alert {j.name} {j.fingerprint} {j.status.value} (joined via {j.via})" for j in s.joined
    ]
    lines += [f"  evidence {e.key}: {'ok' if e.ok else e.error}" for e in s.evidence]
    if s.plan:
        lines.append(f"plan ({s.plan.source}, confidence {s.plan.confidence}):")
        lines += [f"  {a.id} {a.tool} {a.target} {json.dumps(a.params)}" for a in s.plan.actions]
        lines += [f"  note: {n}" for n in s.plan.notes]
        lines += [
            f"  llm {a.provider} {a.round}: {a.outcome}"
            f"{' ' + a.error_type if a.error_type else ''}  {a.tokens_in}/{a.tokens_out} tokens"
            f"  ${a.cost_usd:.5f}{'  cached' if a.cached else ''}"
            for a in s.plan.attempts
        ]
    for o in s.actions:
        lines.append(
            f"action {o.action.id} {o.action.tool}: {o.level.value}/{o.approval.value}"
            f"{' by ' + o.approver if o.approver else ''} → {o.result.value} {o.error}"
        )
        if o.preview:
            lines.append(f"    {o.preview}")
    if s.pending_approval:
        p = s.pending_approval
        lines.append(
            f"WAITING for approval of {p.action.id} until {p.deadline:%H:%M:%S} UTC: {p.preview}"
        )
    if s.verification:
        lines.append(
            f"verification: {'passed' if s.verification.passed else 'FAILED'} — {s.verification.detail}"
        )
    lines += [f"rollback: {r}" for r in s.rollbacks]
    lines += [f"note: {n}" for n in s.notes]
    return lines


@incident_app.command("show")
def incident_show(ident: str = typer.Argument(..., metavar="ID"), as_json: bool = JsonOpt) -> None:
    """One incident's full state: triage, evidence, plan, actions, approvals, verification."""
    from workers.operations import OperationError, show_incident

    async def go() -> Any:
        client, store = await _client_and_store()
        return await show_incident(client, store, ident)

    try:
        s = run(go())
    except OperationError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        out.print_json(s.model_dump_json())
        return
    say(*incident_lines(s))
    say(*(f"record: {line}" for line in _incident_record(s)))


def _incident_record(s: IncidentState) -> list[str]:
    from activities.store import Store
    from workers.learning import incident_record

    store = Store(state.settings.store_url)
    try:
        return incident_record(state.settings, store, s)
    finally:
        store.close()


def _decide(
    ident: str,
    approve: bool,
    approver: str | None,
    action: str,
    reason: str,
    key_file: Path | None,
) -> None:
    from approval import signing
    from core.models import ApprovalDecision
    from workers.operations import OperationError, decide

    settings = state.settings
    who = approver or os.environ.get("HOMELAB_APPROVER") or settings.approval.cli_approver
    if not who:
        raise fail(
            "say who decides: --approver NAME (or HOMELAB_APPROVER / approval.cli_approver)", 2
        )
    key_path = key_file or settings.approval.cli_key_file
    key: str | None = None
    try:
        key = signing.key_for(settings.keys_dir, who, key_path)
    except signing.SigningKeyError as exc:
        if key_path is not None or not settings.approval.allow_unsigned:
            raise fail(str(exc), 2) from exc
    decision = ApprovalDecision(
        action_id=action, approve=approve, approver=who, via="cli", reason=reason
    )

    async def go() -> Any:
        client, store = await _client_and_store()
        return await decide(client, store, ident, decision, key=key)

    try:
        record = run(go())
    except OperationError as exc:
        raise fail(str(exc)) from exc
    say(f"{record.verdict.value}: action {record.action_id} of {ident} by {record.approver}")


ApproverOpt = typer.Option(None, "--approver", "-a", help="Your approver identity.")
ActionOpt = typer.Option("", "--action", help="Action id (default: the one waiting).")
ReasonOpt = typer.Option("", "--reason", "-r")
KeyFileOpt = typer.Option(
    None, "--key-file", help="Your private key (default: approval.keys_dir/NAME.key)."
)


@app.command()
def approve(
    ident: str = typer.Argument(..., metavar="ID"),
    approver: str = ApproverOpt,
    action: str = ActionOpt,
    reason: str = ReasonOpt,
    key_file: Path = KeyFileOpt,
) -> None:
    """Approve the action an incident is waiting on (signed with your key)."""
    _decide(ident, True, approver, action, reason, key_file)


@app.command()
def deny(
    ident: str = typer.Argument(..., metavar="ID"),
    approver: str = ApproverOpt,
    action: str = ActionOpt,
    reason: str = ReasonOpt,
    key_file: Path = KeyFileOpt,
) -> None:
    """Deny the action an incident is waiting on (signed with your key)."""
    _decide(ident, False, approver, action, reason, key_file)


approvers_app = typer.Typer(help="Approvers' signing keys.", no_args_is_help=True)
app.add_typer(approvers_app, name="approvers")


@approvers_app.command("add")
def approvers_add(
    name: str = typer.Argument(..., help="An approver (as in approval.approvers)."),
    keys_dir: Path = typer.Option(None, "--dir", help="Default: approval.keys_dir."),
) -> None:
    """Create NAME's key pair: NAME.key (private, 0600) and NAME.pub (the public key the worker
    trusts). Give the private key only to NAME; on another host, put the printed public key in
    approval.public_keys."""
    from approval import signing

    directory = keys_dir or state.settings.keys_dir
    try:
        path, public = signing.write_pair(directory, name)
    except (signing.SigningKeyError, OSError) as exc:
        raise fail(str(exc), 2) from exc
    if name not in state.settings.approval.approvers and name != signing.TELEGRAM_SIGNER:
        err.print(f"note: {name!r} is not in approval.approvers yet")
    say(f"private key: {path}", f"public key (approval.public_keys.{name}): {public}")


# --- change log, rollback, kill switch, policy ---------------------------------------------------


@app.command()
def changes(
    incident: str = typer.Argument(None, metavar="[INCIDENT]"),
    as_json: bool = JsonOpt,
    limit: int = typer.Option(200, min=1),
    verify: bool = typer.Option(
        False, "--verify", help="Check the hash chain: exit 1 on a rewrite, deletion or reordering."
    ),
    anchor: str = typer.Option(
        None, "--anchor", metavar="SEQ:HASH", help="With --verify: a head printed earlier."
    ),
) -> None:
    """The change log: every write attempt (applied, dry-run, denied, failed, rolled back)."""
    from workers.operations import workflow_id

    store = open_store()
    if verify:
        _verify_changes(store, anchor, as_json)
        return
    records = store.list_changes(workflow_id(incident) if incident else None, limit=limit)
    if incident and not records:
        records = store.list_changes(incident, limit=limit)
    if as_json:
        dump([json.loads(r.model_dump_json()) for r in records])
        return
    table = Table(
        "change", "at", "incident", "action", "target", "level", "approval", "result", "preview"
    )
    for r in records:
        result = r.result.value + (
            f" (undone by {r.rolled_back_by[:8]})" if r.rolled_back_by else ""
        )
        if r.rollback_of:
            result += f" [undoes {r.rollback_of[:8]}]"
        table.add_row(
            *cells(
                r.change_id[:8],
                f"{r.at:%m-%d %H:%M:%S}",
                r.workflow_id,
                r.action,
                r.target,
                r.level.value,
                r.approval.value + (f" {r.approver}" if r.approver else ""),
                result,
                r.preview,
            )
        )
    out.print(table)


def _verify_changes(store: Any, anchor: str | None, as_json: bool) -> None:
    pinned: tuple[int, str] | None = None
    if anchor:
        seq, _, digest = anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise fail(f"--anchor {anchor!r}: expected SEQ:HASH as `changes --verify` prints", 2)
        pinned = (int(seq), digest.lower())
    report = store.verify_chain(pinned)
    if as_json:
        dump({**report.model_dump(mode="json"), "ok": report.ok})
    else:
        say(*report.lines())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def rollback(change_id: str = typer.Argument(..., metavar="CHANGE_ID")) -> None:
    """Undo one recorded change (a new, policy-gated and recorded workflow)."""
    from activities.store import Store
    from workers.operations import OperationError, start_rollback

    store = Store(state.settings.store_url)
    full = next(
        (
            r.change_id
            for r in store.list_changes(limit=100000)
            if r.change_id.startswith(change_id)
        ),
        change_id,
    )

    async def go() -> str:
        client, _ = await _client_and_store()
        return await start_rollback(client, state.settings, store, full)

    try:
        wid = run(go())
    except OperationError as exc:
        raise fail(str(exc)) from exc
    say(f"started {wid}; follow it with: homelab-agents incident show {wid}")


def _pause(paused: bool, actor: str | None, reason: str) -> None:
    from workers.operations import set_paused

    who = (
        actor
        or os.environ.get("HOMELAB_APPROVER")
        or state.settings.approval.cli_approver
        or os.environ.get("USER", "cli")
    )

    async def go() -> int:
        client, store = await _client_and_store()
        return await set_paused(client, store, paused, f"cli:{who}", reason)

    told = run(go())
    say(f"writes {'PAUSED' if paused else 'resumed'} by {who}; {told} running incident(s) told")


@app.command()
def pause(actor: str = typer.Option(None, "--as"), reason: str = ReasonOpt) -> None:
    """Kill switch: no incident runs another write until `resume`."""
    _pause(True, actor, reason)


@app.command()
def resume(actor: str = typer.Option(None, "--as"), reason: str = ReasonOpt) -> None:
    """Lift the kill switch."""
    _pause(False, actor, reason)


@policy_app.command("explain")
def policy_explain(
    action: str,
    target: str,
    as_json: bool = JsonOpt,
    recent_writes: int = typer.Option(None, help="Assume this many writes in the last hour."),
) -> None:
    """The level ACTION on TARGET (service:target/resource) gets, and why."""
    from activities.catalog import ToolFailure
    from activities.store import Store
    from activities.toolsets import default_catalog
    from approval.policy import decide
    from core.models import PolicyRequest, TargetRef

    catalog = default_catalog()
    try:
        spec = catalog.get(action)
        ref = TargetRef.parse(target)
    except (ToolFailure, ValueError) as exc:
        raise fail(str(exc), 2) from exc
    if not spec.is_write:
        say(f"{action} is a read tool: it never needs approval")
        return
    store = Store(state.settings.store_url)
    count = recent_writes
    if count is None:
        count = store.count_recent_writes(str(ref))
    decision = decide(
        state.settings,
        PolicyRequest(
            action=action, target=ref, default_level=spec.level, reversibility=spec.reversibility
        ),
        count,
        store.learned_policy(action, str(ref)),
    )
    if as_json:
        dump(decision.model_dump(mode="json"))
        return
    say(f"{decision.level.value}{' (dry-run)' if decision.dry_run else ''} for {action} on {ref}")
    for reason in decision.reasons:
        say(f"  - {reason}")


def _human(actor: str | None) -> str:
    who = actor or os.environ.get("HOMELAB_APPROVER") or state.settings.approval.cli_approver
    if not who:
        raise fail("say who decides: --as NAME (or HOMELAB_APPROVER / approval.cli_approver)", 2)
    return f"cli:{who}"


AsOpt = typer.Option(None, "--as", help="Who decides (recorded in the change log).")


@policy_app.command("suggest")
def policy_suggest(as_json: bool = JsonOpt) -> None:
    """Actions a human approved often on a target, every run verified and no 👎: a lower level
    you may accept (`policy accept`). Nothing changes until you do."""
    from activities.store import Store
    from activities.toolsets import default_catalog
    from workers.learning import suggest

    proposals = suggest(state.settings, Store(state.settings.store_url), default_catalog())
    if as_json:
        dump(
            [
                {
                    **p.suggestion.model_dump(mode="json"),
                    "level": p.level.value,
                    "reasons": p.reasons,
                }
                for p in proposals
            ]
        )
        return
    if not proposals:
        say(
            f"no suggestions: nothing was approved {state.settings.memory.suggest_after} times "
            "on one target with every verification passing and no 👎"
        )
        return
    table = Table("action", "target", "approved", "last", "now", "suggested", "accept with")
    for p in proposals:
        s = p.suggestion
        table.add_row(
            *cells(
                s.action,
                s.target,
                f"{s.approvals} of {s.runs} runs",
                f"{s.last_approved:%Y-%m-%d %H:%M}",
                p.level.value,
                s.suggested.value,
                f"homelab-agents policy accept {s.action} {s.target}",
            )
        )
    out.print(table)


@policy_app.command("accept")
def policy_accept(
    action: str,
    target: str,
    level: str = typer.Option("SOFT", help="NONE or SOFT."),
    actor: str = AsOpt,
    reason: str = ReasonOpt,
    force: bool = typer.Option(False, "--force", help="Accept what is not a suggestion."),
) -> None:
    """Lower ACTION on TARGET to LEVEL (a human decision, recorded in the change log)."""
    from activities.store import Store
    from activities.toolsets import default_catalog
    from core.models import RiskLevel
    from workers.learning import LearningError, accept

    try:
        wanted = RiskLevel(level.upper())
    except ValueError as exc:
        raise fail(f"--level {level}: NONE or SOFT", 2) from exc
    who = _human(actor)
    try:
        record, before, after = accept(
            state.settings,
            Store(state.settings.store_url),
            default_catalog(),
            action,
            target,
            wanted,
            who,
            reason,
            force,
        )
    except LearningError as exc:
        raise fail(str(exc)) from exc
    say(
        f"{action} on {record.target}: {before.value} → {after.value}, accepted by {who} "
        f"(change {record.change_id[:8]})"
    )


@policy_app.command("clear")
def policy_clear(action: str, target: str, actor: str = AsOpt, reason: str = ReasonOpt) -> None:
    """Lift a learned restriction of ACTION on TARGET (recorded in the change log)."""
    from activities.store import Store
    from activities.toolsets import default_catalog
    from workers.learning import LearningError, clear

    who = _human(actor)
    try:
        record = clear(
            Store(state.settings.store_url), default_catalog(), action, target, who, reason
        )
    except LearningError as exc:
        raise fail(str(exc)) from exc
    say(
        f"{action} on {record.target}: learned restriction cleared by {who} "
        f"(change {record.change_id[:8]})"
    )


@policy_app.command("revoke")
def policy_revoke(action: str, target: str, actor: str = AsOpt, reason: str = ReasonOpt) -> None:
    """Withdraw a level accepted for ACTION on TARGET (recorded in the change log)."""
    from activities.store import Store
    from activities.toolsets import default_catalog
    from workers.learning import LearningError, revoke

    who = _human(actor)
    try:
        record = revoke(
            Store(state.settings.store_url), default_catalog(), action, target, who, reason
        )
    except LearningError as exc:
        raise fail(str(exc)) from exc
    say(
        f"{action} on {record.target}: accepted level revoked by {who} "
        f"(change {record.change_id[:8]})"
    )


@policy_app.command("learned")
def policy_learned(as_json: bool = JsonOpt) -> None:
    """Learned restrictions in force and levels humans accepted."""
    from activities.store import Store

    store = Store(state.settings.store_url)
    restrictions, overrides = store.restrictions(), store.overrides()
    if as_json:
        dump({"restrictions": restrictions, "accepted": overrides})
        return
    table = Table("kind", "action", "target", "level", "since", "why / by")
    for r in restrictions:
        table.add_row(
            *cells(
                "learned",
                r["action"],
                r["target"],
                r["level"],
                f"{r['since']:%Y-%m-%d %H:%M}",
                r["reason"],
            )
        )
    for o in overrides:
        table.add_row(
            *cells(
                "accepted",
                o["action"],
                o["target"],
                o["level"],
                f"{o['accepted_at']:%Y-%m-%d %H:%M}",
                o["accepted_by"],
            )
        )
    out.print(table)


# --- learning and memory -------------------------------------------------------------------------


@app.command()
def stats(
    as_json: bool = JsonOpt, alert: str = typer.Option(None, help="Only this alert.")
) -> None:
    """The verified record per alert, kind of target and action (decayed success rate)."""
    from activities.store import Store
    from workers.learning import action_stats

    rows = action_stats(state.settings, Store(state.settings.store_url), alert)
    if as_json:
        dump([r.model_dump(mode="json", exclude={"line"}) for r in rows])
        return
    table = Table(
        "alert",
        "kind",
        "action",
        "applied",
        "verified",
        "failed verif.",
        "rolled back",
        "approved",
        "👍",
        "👎",
        "score",
        "last verified",
    )
    for r in rows:
        table.add_row(
            *cells(
                r.alert,
                r.target_kind,
                r.action,
                r.applied,
                r.verified,
                r.failed_verification,
                r.rolled_back,
                r.approved,
                r.thumbs_up,
                r.thumbs_down,
                f"{r.score:.2f}",
                f"{r.last_verified:%Y-%m-%d %H:%M}" if r.last_verified else "-",
            )
        )
    out.print(table)


@memory_app.command("status")
def memory_status(as_json: bool = JsonOpt) -> None:
    """Where the incident memory lives, the embedder, and the points per collection."""
    from activities.memory.embedders import make_embedder
    from activities.memory.qdrant import MemoryUnavailable, VectorStore

    settings = state.settings
    key = settings.memory.api_key
    vectors = VectorStore(settings.memory_location, key.get_secret_value() if key else None)
    embedder = make_embedder(settings.memory.embedder)
    try:
        counts = vectors.count()
    except MemoryUnavailable as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:
        raise fail(f"incident memory at {settings.memory_location}: {exc}") from exc
    finally:
        vectors.close()
    info = {"location": settings.memory_location, "embedder": embedder.name, "collections": counts}
    if as_json:
        dump(info)
        return
    say(f"memory: {info['location']}  embedder: {embedder.name}")
    say(*(f"  {name}: {n} incident(s)" for name, n in counts.items()))
    say(f"  total: {sum(counts.values())}")


@memory_app.command("reindex")
def memory_reindex() -> None:
    """Embed every recorded incident with the current embedder (after switching embedders, or
    when the memory was down at close). Re-running it changes nothing."""
    from activities.store import Store
    from workers.learning import LearningError, reindex

    try:
        counts = run(reindex(state.settings, Store(state.settings.store_url)))
    except LearningError as exc:
        raise fail(str(exc)) from exc
    say(f"stored {counts['stored']}, skipped {counts['skipped']}, failed {counts['failed']}")


# --- catalog -----------------------------------------------------------------------------------


@tools_app.command("list")
def tools_list(as_json: bool = JsonOpt, service: str = typer.Option(None)) -> None:
    """Every tool: service, read/write, default level, reversibility."""
    from activities.toolsets import default_catalog

    specs = [s for s in default_catalog() if not service or s.service == service]
    if as_json:
        dump([s.describe() for s in specs])
        return
    table = Table("tool", "kind", "level", "reversibility", "description")
    for s in specs:
        table.add_row(
            *cells(
                s.name,
                s.kind.value,
                s.level.value if s.is_write else "-",
                s.reversibility.value if s.is_write else "-",
                s.description,
            )
        )
    out.print(table)
    out.print(f"{len(specs)} tools ({sum(s.is_write for s in specs)} write)")


@tools_app.command("docs")
def tools_docs(
    output: Path = typer.Option(Path("docs"), "--output", "-o", help="Folder to write into."),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if the files differ from the catalog."
    ),
) -> None:
    """Write the tool and runbook reference (tools.md, runbooks.md, the README's tool table)."""
    from activities.runbooks import load_runbooks
    from activities.toolsets import default_catalog
    from workers.reference import runbooks_markdown, tools_markdown, with_readme_tools

    catalog = default_catalog()
    pages = {
        output / "tools.md": tools_markdown(catalog),
        output / "runbooks.md": runbooks_markdown(
            load_runbooks(catalog, state.settings.runbook_dirs)
        ),
    }
    readme = output.resolve().parent / "README.md"
    if readme.is_file():
        pages[readme] = with_readme_tools(readme.read_text(), catalog)
    stale = [path for path, text in pages.items() if _read(path) != text]
    if check:
        for path in stale:
            err.print(f"{path} is out of date: run `homelab-agents tools docs`")
        raise typer.Exit(1 if stale else 0)
    output.mkdir(parents=True, exist_ok=True)
    for path, text in pages.items():
        path.write_text(text)
    out.print(f"wrote {', '.join(str(p) for p in pages)} ({len(stale)} changed)")


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


# --- schedules and reports ----------------------------------------------------------------------


@schedules_app.command("apply")
def schedules_apply(
    as_json: bool = JsonOpt,
    keep: bool = typer.Option(False, "--keep", help="Do not delete schedules the config dropped."),
) -> None:
    """Create or update the config's schedules on Temporal (idempotent); delete dropped ones."""
    from workers.schedules import apply

    async def go() -> list[Any]:
        client, _ = await _client_and_store()
        return await apply(client, state.settings, delete=not keep)

    rows = run(go())
    if as_json:
        dump([r.model_dump(mode="json") for r in rows])
        return
    table = Table("schedule", "id", "action")
    for r in rows:
        table.add_row(*cells(r.name, r.schedule_id, r.action))
    out.print(table)


@schedules_app.command("list")
def schedules_list(as_json: bool = JsonOpt) -> None:
    """Each schedule: its spec, next runs, last run and that run's result."""
    from workers.schedules import list_schedules

    async def go() -> list[Any]:
        client, _ = await _client_and_store()
        return await list_schedules(client, state.settings)

    rows = run(go())
    if as_json:
        dump([r.model_dump(mode="json") for r in rows])
        return
    table = Table("schedule", "workflow", "spec", "state", "next run", "last run", "last result")
    for r in rows:
        result = r.last_result or {}
        summary = (
            f"{r.last_status}: {result.get('findings', 0)} finding(s), "
            f"{result.get('opened', 0)} opened, {result.get('resolved', 0)} resolved"
            if result
            else r.last_status or "-"
        )
        table.add_row(
            *cells(
                r.name,
                r.workflow,
                r.spec,
                "paused" if r.paused else "active",
                r.next_runs[0].strftime("%Y-%m-%d %H:%M:%S") if r.next_runs else "-",
                r.last_started.strftime("%Y-%m-%d %H:%M:%S") if r.last_started else "-",
                summary,
            )
        )
    out.print(table)


@report_app.command("patterns")
def report_patterns(
    as_json: bool = JsonOpt,
    days: int = typer.Option(7, min=1, max=365, help="The period covered."),
    weeks: int = typer.Option(8, min=1, max=52, help="Weeks in the MTTR trend."),
) -> None:
    """Incidents by weekday, hour, target and alert; recurring faults; the MTTR trend."""
    from activities.proactive.patterns import build
    from activities.store import Store
    from core.schedules import PatternReportInput

    store = Store(state.settings.store_url)
    try:
        report = build(store, PatternReportInput(days=days, trend_weeks=weeks))
    finally:
        store.close()
    if as_json:
        dump(report.model_dump(mode="json"))
        return
    say(*report.lines())


def main() -> None:
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # usage errors (typer vendors click's exceptions)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {escape(redact_text(str(exc)))}")
        code = int(getattr(exc, "exit_code", 2))
    except ConfigError as exc:
        err.print(f"[red]config error:[/] {escape(redact_text(str(exc)))}", highlight=False)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        logging.getLogger("homelab-agents").exception("unexpected failure")
        err.print(
            f"[red]error:[/] {escape(redact_text(f'{type(exc).__name__}: {exc}'))}",
            highlight=False,
        )
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
