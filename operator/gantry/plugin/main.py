"""`kubectl gantry`: what runs where, and the on-call buttons, from a terminal.

Installed as the console script `kubectl-gantry`, which kubectl finds on PATH as a plugin.
Reads with the caller's own kubeconfig and RBAC; every button is a ReleaseDecision made as the
caller, so the operator's audit trail and the decidedBy admission policy apply as usual. The
command line (flags anywhere, completion) is in plugin.flags; what is shown, in plugin.views.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import config as k8s_config

from gantry.adapters.kube import (
    GROUP,
    UNREACHABLE,
    VERSION,
    ApiError,
    Kube,
    custom_path,
    load_api_client,
    no_cluster,
    segment,
    self_review,
    unreachable,
)
from gantry.adapters.objects import locks as lock_objects
from gantry.adapters.objects.ledgers import LEDGER_KEYS
from gantry.adapters.resources import Resources
from gantry.domain.inputs.pipeline import parse_pipeline
from gantry.domain.inputs.workloads import Rollout
from gantry.domain.records import ledger, locks
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.problems import Problem
from gantry.plugin import flags, views

WATCH_SECONDS = 2.0
Out = Callable[[str], None]


class PluginError(Exception):
    """A message for the user: what is wrong and what to do."""


def main(argv: Sequence[str] | None = None, out: Out = print) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["__complete"]:  # what the completion scripts ask
        out("\n".join(complete(words[1:] or [""])))
        return 0
    args = flags.parser().parse_args(words)
    host = "the API server"
    try:
        if args.handler == "completion":
            out(flags.completion_script(args.shell))
            return 0
        client = load_api_client(kubeconfig=args.kubeconfig, context=args.context, retries=0)
        host = client.configuration.host
        kube = Kube(client)
        namespace = args.namespace or current_namespace(args)
        return int(HANDLERS[args.handler](kube, namespace, args, out) or 0)
    except UNREACHABLE as error:
        print(
            f"error: {unreachable(host, error)}; is the cluster up, and do "
            "KUBECONFIG and --context point at it?",
            file=sys.stderr,
        )
        return 1
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiError as error:
        hint = " (ask for the gantry-oncall role)" if error.status == 403 else ""
        print(f"error: the API server refused: {error.message}{hint}", file=sys.stderr)
        return 1
    except k8s_config.ConfigException as error:
        print(f"error: {no_cluster(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C ends --watch, as it ends kubectl get -w
        return 130


def kubeconfig_context(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The kubeconfig's context (namespace, user) as kubectl reads it: --context's, else the
    current one; {} without one."""
    kubeconfig = getattr(args, "kubeconfig", None) or os.environ.get("KUBECONFIG") or None
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError):
        return {}
    wanted = getattr(args, "context", None)
    chosen = next((c for c in contexts or () if c.get("name") == wanted), None) if wanted else current
    return dict((chosen or {}).get("context") or {})


COMPLETION_TIMEOUT = 2.0  # seconds: a completion that waits longer is worse than none


def complete(typed: list[str]) -> list[str]:
    """Flags and commands, and the names the next word may be: Releases for approve, fail-forward
    and lift-quarantine; applications for rollback, emergency, status and history. Names come
    from the cluster when it answers in time; completion never fails the shell."""
    offered = flags.words(typed)
    try:
        prefix = typed[-1]
        offered += [name for name in names_next(typed[:-1]) if name.startswith(prefix)]
    except Exception:  # no cluster, no rights, a timeout: flags only
        pass
    return sorted(dict.fromkeys(offered))


def names_next(before: list[str]) -> list[str]:
    """The cluster's names for the positional word after `before`, if the command wants one."""
    words = positional(before)
    command = next((w for w in words if w in flags.BUTTONS or w in ("status", "history")), None)
    if command is None or words[-1] != command:
        return []  # no command yet, or its name is already typed
    namespace = next((b for a, b in itertools.pairwise(before) if a in ("-n", "--namespace")), None)
    kube = Kube(load_api_client(retries=0), timeout=COMPLETION_TIMEOUT)
    where = namespace or current_namespace()
    if command in flags.BUTTONS and command not in flags.ON_APPLICATION:
        return [r["metadata"]["name"] for r in kube.list_items(collection("releases", where))]
    found = kube.list_items(collection("pipelines", where))
    return [str((p.get("spec") or {}).get("application") or p["metadata"]["name"]) for p in found]


def positional(typed: list[str]) -> list[str]:
    """The words that are not flags nor a flag's value."""
    out, skip = [], False
    for word in typed:
        if skip:
            skip = False
        elif word in flags.VALUE_FLAGS:
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


def current_namespace(args: argparse.Namespace | None = None) -> str:
    return str(kubeconfig_context(args).get("namespace") or "default")


def render(tables: list[views.Table], args: argparse.Namespace) -> str:
    """Tables for people; for -o json|yaml the raw records (full digests, RFC 3339 times)."""
    if args.output == "table":
        return "\n\n".join(views.render(t) for t in tables)
    data: Any = [
        {"title": t.title, "rows": views.as_data(t)} if t.title else views.as_data(t) for t in tables
    ]
    data = data[0] if len(data) == 1 else data
    if args.output == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def collection(plural: str, namespace: str | None) -> str:
    """A namespace's objects of a kind, or (None) every namespace's, as -A lists them."""
    return custom_path(plural, namespace) if namespace is not None else f"/apis/{GROUP}/{VERSION}/{plural}"


def pipelines(kube: Kube, namespace: str | None, application: str | None) -> list[dict[str, Any]]:
    found = kube.list_items(collection("pipelines", namespace))
    if application is not None:
        found = [
            p for p in found if (p.get("spec") or {}).get("application", p["metadata"]["name"]) == application
        ]
        if not found:
            where = (
                f"in namespace {namespace!r} (try -n NAMESPACE, or -A)" if namespace else "in any namespace"
            )
            raise PluginError(f"no Pipeline for application {application!r} {where}")
    return sorted(
        with_ledgers(kube, namespace, found),
        key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]),
    )


def missing_namespace(kube: Kube, namespace: str) -> bool:
    """Known not to exist (a user not allowed to read namespaces is told nothing more)."""
    try:
        kube.request("GET", f"/api/v1/namespaces/{segment(namespace)}")
    except ApiError as error:
        return error.not_found
    return False


def with_ledgers(kube: Kube, namespace: str | None, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each Pipeline with its ProductionLedger's record in place of the status mirror when the
    ledger is newer (the mirror follows a moment later): history, status and the buttons act on
    what production runs, the record the operator itself decides from."""
    try:
        items = kube.list_items(collection("productionledgers", namespace))
    except ApiError as error:
        if error.status != 403:
            raise
        items = []  # not allowed to read ledgers: the Pipelines' mirrors are what this user sees
    ledgers = {(i["metadata"]["namespace"], i["metadata"]["name"]): i.get("status") or {} for i in items}
    out = []
    for pipeline in found:
        status = pipeline.get("status") or {}
        kept = ledgers.get((pipeline["metadata"]["namespace"], pipeline["metadata"]["name"])) or {}
        if int(kept.get("revision") or 0) > int(status.get("ledgerRevision") or 0):
            record = {k: kept.get(k) for k in LEDGER_KEYS} | {"ledgerRevision": kept["revision"]}
            pipeline = {**pipeline, "status": {**status, **record}}
        out.append(pipeline)
    return out


# --- status and history ----------------------------------------------------------------------


def between_frames() -> None:
    """The pause of --watch (its own name, so a test can end the watch without touching time.sleep,
    which every other thread of the process shares)."""
    time.sleep(WATCH_SECONDS)


def show_status(kube: Kube, namespace: str, args: argparse.Namespace, out: Out) -> None:
    while True:
        out(status_text(kube, namespace, args))
        if not args.watch:
            return
        between_frames()
        out("")


def status_text(kube: Kube, namespace: str, args: argparse.Namespace) -> str:
    where = None if args.all_namespaces else namespace
    tables, applications = status_of(kube, where, args.application, datetime.now(UTC))
    if not tables:
        if where and missing_namespace(kube, where):
            raise PluginError(f"namespace {where!r} does not exist (kubectl get namespaces; or -A)")
        if args.output != "table":
            return dump(views.status_document([]), args)
        return f"No Pipelines in namespace {namespace}." if where else "No Pipelines in any namespace."
    if args.output != "table":
        return dump(views.status_document(applications), args)
    return render(tables, args)


def status_of(
    kube: Kube, where: str | None, application: str | None, now: datetime
) -> tuple[list[views.Table], list[dict[str, Any]]]:
    """Each application's environments and Releases in flight: the tables `kubectl gantry status`
    prints and the records of its -o json (which the web view shows too)."""
    releases = kube.list_items(collection("releases", where))
    every_lock = kube.list_items(collection("environmentlocks", where))
    tables, applications = [], []
    for pipeline in pipelines(kube, where, application):
        home = pipeline["metadata"]["namespace"]
        mine = [r for r in releases if r["metadata"]["namespace"] == home]
        held = {
            lock["metadata"]["name"]: lock for lock in every_lock if lock["metadata"]["namespace"] == home
        }
        workloads = stage_workloads(kube, pipeline)
        images = {stage: found[0] for stage, found in workloads.items()}
        health = {stage: found[1] for stage, found in workloads.items()}
        table = views.status_table(pipeline, mine, held, images, now, health)
        flight = views.in_flight_table(pipeline, mine, now)
        tables.extend([table, flight] if flight.rows else [table])
        applications.append(views.application_record(pipeline, table, flight, now))
    return tables, applications


def dump(data: Any, args: argparse.Namespace) -> str:
    return (
        json.dumps(data, indent=2)
        if args.output == "json"
        else yaml.safe_dump(data, sort_keys=False).rstrip()
    )


def stage_workloads(kube: Kube, pipeline: dict[str, Any]) -> dict[str, tuple[list[str], Rollout | None]]:
    """What each stage's first target workload runs now (container images) and its rollout, by
    stage name."""
    parsed = parse_pipeline(pipeline["metadata"]["name"], pipeline.get("spec") or {})
    if isinstance(parsed, Problem):
        return {}
    out: dict[str, tuple[list[str], Rollout | None]] = {}
    for stage in parsed.stages:
        try:
            found = Resources(kube).find_workloads(stage.targets[0])[:1]
        except ApiError:
            found = ()  # not allowed to read it: the row shows "-"
        out[stage.name] = (list(found[0].containers.values()), found[0].rollout) if found else ([], None)
    return out


def show_history(kube: Kube, namespace: str, args: argparse.Namespace, out: Out) -> None:
    (pipeline,) = pipelines(kube, namespace, args.application)[:1]
    out(render([views.history_table(pipeline, datetime.now(UTC))], args))


# --- the buttons -------------------------------------------------------------------------------


def press(kube: Kube, namespace: str, args: argparse.Namespace, out: Out) -> int:
    release_namespace, release = target(kube, namespace, args)
    if args.command in flags.CONFIRMED and not args.yes:
        confirm(f"{args.action} production of {args.application} (it runs {release} now)?")
    user, groups = identity(kube)
    reason = args.reason or f"kubectl gantry {args.command}"
    decision = decision_manifest(
        release_namespace, release, args.action, user, groups, reason, getattr(args, "digest", None)
    )
    created = kube.create(custom_path("releasedecisions", release_namespace), decision)
    name = created["metadata"]["name"]
    out(f"releasedecision.gantry.dev/{name} created: {args.action} on {release} as {user}")
    follow = f"kubectl get releasedecision {name} -n {release_namespace} -w"
    outcome = verdict(kube, release_namespace, name, args.wait)
    if outcome is None:
        out(f"not handled yet after {args.wait:g}s (is the operator running?); follow it: {follow}")
        return 0
    phase, message = str(outcome.get("phase")), str(outcome.get("message") or "")
    if phase in REFUSED:
        raise PluginError(f"{args.action} {phase}: {message}")
    out(f"{phase}: {message}" if message else phase)
    return 0


REFUSED = frozenset({"Rejected", "Ignored"})  # a decision the operator did not act on, and why


def decision_manifest(
    namespace: str,
    release: str,
    action: str,
    user: str,
    groups: Sequence[str],
    reason: str,
    digest: str | None = None,
) -> dict[str, Any]:
    """A ReleaseDecision as a person makes it (kubectl gantry, or the web view on their behalf)."""
    spec: dict[str, Any] = {"release": release, "action": action, "decidedBy": user, "reason": reason}
    if action == "Approve" and groups:  # what a stage's approval policy may count
        spec["groups"] = list(groups)
    if digest:
        spec["digest"] = digest
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ReleaseDecision",
        "metadata": {
            # The server makes each name unique: two presses in the same second are two decisions.
            "generateName": f"{release}-{action.lower()}-",
            "namespace": namespace,
        },
        "spec": spec,
    }


def verdict(kube: Kube, namespace: str, name: str, wait: float) -> dict[str, Any] | None:
    """The decision's status once the operator has judged it, or None after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        status = (kube.get(custom_path("releasedecisions", namespace, name)) or {}).get("status") or {}
        if status.get("phase"):
            return dict(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def target(kube: Kube, namespace: str, args: argparse.Namespace) -> tuple[str, str]:
    """(namespace, name) of the Release a button acts on."""
    if args.command in flags.ON_APPLICATION:
        (pipeline,) = pipelines(kube, namespace, args.application)[:1]
        current = views.current_release(pipeline)
        if current is None:
            raise PluginError(
                f"{args.application} has nothing in production yet; there is nothing to {args.action}"
            )
        history = views.production_ledger(pipeline)
        standing = ledger.current(history) or {}
        if args.action == "Rollback" and ledger.stood_before(history, str(standing.get("uid"))) is None:
            raise PluginError(
                f"{current} is the first Release production ran: there is nothing earlier to roll back to; "
                f"ship a fix as a new Release, or: {commands.emergency(namespace, args.application)}"
            )
        release_namespace, release = current.split("/", 1)
        return release_namespace, release
    if kube.get(custom_path("releases", namespace, args.release)) is None:
        raise PluginError(
            f"Release {args.release!r} not found in namespace {namespace!r} "
            f"(kubectl get releases -n {namespace})"
        )
    return namespace, str(args.release)


def confirm(question: str) -> None:
    """Ask on the terminal; refuse (never guess) without one: scripts say --yes."""
    if not sys.stdin.isatty():
        raise PluginError(f"{question} This changes production: add --yes to confirm without a terminal")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise PluginError("not confirmed; nothing was done")


# --- locks -------------------------------------------------------------------------------------


def handle_lock(kube: Kube, namespace: str, args: argparse.Namespace, out: Out) -> None:
    now = datetime.now(UTC)
    if args.verb == "status":
        found = kube.list_items(collection("environmentlocks", None if args.all_namespaces else namespace))
        if args.environment:
            found = [lock for lock in found if lock["metadata"]["name"] == args.environment]
        ordered = sorted(found, key=lambda lock: (lock["metadata"]["namespace"], lock["metadata"]["name"]))
        out(render([views.lock_table(ordered, now)], args))
        return
    if not args.environment:
        raise PluginError(f"lock {args.verb} needs an ENVIRONMENT (kubectl gantry lock status lists them)")
    body = kube.get(custom_path("environmentlocks", namespace, args.environment))
    if body is None:
        raise PluginError(f"EnvironmentLock {args.environment!r} not found in namespace {namespace!r}")
    resources = Resources(kube)
    if args.verb == "freeze":
        freeze = locks.freeze_by_hand(whoami(kube), args.reason or "frozen by hand", now)
        resources.freeze_by_hand(namespace, args.environment, freeze)
        out(
            f"environmentlock.gantry.dev/{args.environment} frozen: "
            "only hotfix Releases may take it until unfrozen"
        )
        return
    state = lock_objects.settled(body, now)
    frozen = state.frozen
    incident = state.active_incident
    if (frozen, incident, state.manual) == (None, None, None) and state.window is not None:
        raise PluginError(
            f"lock unfreeze {args.environment}: it is in the freeze {state.window.by} until it closes "
            "(spec.freezeWindows); let one Release through on the record instead: kubectl gantry "
            "override-freeze RELEASE --reason '…'"
        )
    lifting = (
        f"the emergency of {frozen.by}" if frozen else f"the incident alert {incident.by}" if incident else ""
    )
    if lifting and not args.reason:
        raise PluginError(
            f"lock unfreeze {args.environment}: it is frozen by {lifting}; lifting that before it ends on "
            "its own is an override: say why with --reason '…' (kept in the lock's history)"
        )
    if state.manual is not None:
        resources.freeze_by_hand(namespace, args.environment, None)
    if lifting:  # an emergency's or an incident's freeze: lifting it is an override, on the record
        who = whoami(kube)
        why = f"FreezeLifted by {who}: {args.reason}"
        resources.update_lock(
            namespace,
            args.environment,
            lambda state, lease, seen: (
                locks.lift_incident(locks.unfreeze(state, why, now), who, why, now),
                None,
            ),
            now,
        )
    out(f"environmentlock.gantry.dev/{args.environment} unfrozen")


def whoami(kube: Kube) -> str:
    return identity(kube)[0]


def identity(kube: Kube) -> tuple[str, list[str]]:
    """The caller's user name and groups as the API server sees them, else the kubeconfig's user."""
    found = self_review(kube)
    if found is not None:
        return found
    return str(kubeconfig_context().get("user") or os.environ.get("USER") or "unknown"), []


HANDLERS: dict[str, Callable[[Kube, str, argparse.Namespace, Out], int | None]] = {
    "status": show_status,
    "history": show_history,
    "press": press,
    "lock": handle_lock,
}


def entry() -> None:
    sys.exit(main())


def complete_entry() -> None:
    """kubectl's plugin completion (`kubectl_complete-gantry ARGS…`): the candidates, one per
    line, then cobra's directive line (:4, no file names)."""
    print("\n".join([*flags.words(sys.argv[1:] or [""]), ":4"]))
