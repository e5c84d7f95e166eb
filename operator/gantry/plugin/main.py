"""`kubectl gantry`: what runs where, and the on-call buttons, from a terminal.

Installed as the console script `kubectl-gantry`, which kubectl finds on PATH as a plugin.
Reads with the caller's own kubeconfig and RBAC; every button is a ReleaseDecision made as the
caller, so the operator's audit trail and the decidedBy admission policy apply as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import config as k8s_config

from gantry.adapters.kube import ApiError, Kube, custom_path, load_api_client
from gantry.adapters.resources import Resources
from gantry.domain import locks
from gantry.domain.pipeline import parse_pipeline
from gantry.domain.problems import Problem
from gantry.plugin import views

BUTTONS = {
    "approve": "Approve",
    "fail-forward": "FailForward",
    "rollback": "Rollback",
    "emergency": "Emergency",
}


class PluginError(Exception):
    """A message for the user: what is wrong and what to do."""


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    args = parser().parse_args(argv)
    try:
        kube = Kube(load_api_client())
        namespace = args.namespace or current_namespace()
        return int(args.handler(kube, namespace, args, out) or 0)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiError as error:
        hint = " (ask for the gantry-oncall role)" if error.status == 403 else ""
        print(f"error: the API server refused: {error.message}{hint}", file=sys.stderr)
        return 1
    except k8s_config.ConfigException as error:
        print(
            f"error: no cluster configured ({error}); set KUBECONFIG or use kubectl config use-context",
            file=sys.stderr,
        )
        return 1


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kubectl gantry", description="Gantry releases: status and on-call decisions"
    )
    root.add_argument(
        "-n", "--namespace", help="where the Pipelines and Releases live (default: the context's)"
    )
    root.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status", help="each environment's version, digest, age, lock holder and queue"
    )
    status.add_argument("application", nargs="?", help="one application (default: all in the namespace)")
    status.set_defaults(handler=show_status)

    history = commands.add_parser("history", help="what ran in production, who decided")
    history.add_argument("application")
    history.set_defaults(handler=show_history)

    for name, action in BUTTONS.items():
        on_app = name in ("rollback", "emergency")
        button = commands.add_parser(
            name,
            help=f"{action} decision on "
            + ("the Release production runs now" if on_app else "a Release (a ReleaseDecision made as you)"),
        )
        button.add_argument("application" if on_app else "release")
        button.add_argument("--reason", default="", help="why; kept in the decision and the ledger")
        button.set_defaults(handler=press, action=action)

    lock = commands.add_parser("lock", help="EnvironmentLocks: status, freeze, unfreeze")
    lock.add_argument("verb", choices=("status", "freeze", "unfreeze"))
    lock.add_argument("environment", nargs="?")
    lock.add_argument("--reason", default="")
    lock.set_defaults(handler=handle_lock)
    return root


def kubeconfig_context() -> dict[str, Any]:
    """The kubeconfig's current context (namespace, user), as kubectl reads it; {} without one."""
    try:
        _, context = k8s_config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError):
        return {}
    return dict((context or {}).get("context") or {})


def current_namespace() -> str:
    return str(kubeconfig_context().get("namespace") or "default")


def emit(tables: list[views.Table], args: argparse.Namespace, out: Callable[[str], None]) -> None:
    if args.output == "table":
        out("\n\n".join(views.render(t) for t in tables))
        return
    data: Any = [
        {"title": t.title, "rows": views.as_data(t)} if t.title else views.as_data(t) for t in tables
    ]
    data = data[0] if len(data) == 1 else data
    out(
        json.dumps(data, indent=2)
        if args.output == "json"
        else yaml.safe_dump(data, sort_keys=False).rstrip()
    )


def pipelines(kube: Kube, namespace: str, application: str | None) -> list[dict[str, Any]]:
    found = kube.list_items(custom_path("pipelines", namespace))
    if application is not None:
        found = [
            p for p in found if (p.get("spec") or {}).get("application", p["metadata"]["name"]) == application
        ]
        if not found:
            raise PluginError(
                f"no Pipeline for application {application!r} in namespace {namespace!r} (try -n NAMESPACE)"
            )
    return sorted(found, key=lambda p: p["metadata"]["name"])


def show_status(kube: Kube, namespace: str, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    now = datetime.now(UTC)
    releases = kube.list_items(custom_path("releases", namespace))
    locks = {
        lock["metadata"]["name"]: lock for lock in kube.list_items(custom_path("environmentlocks", namespace))
    }
    tables = [
        views.status_table(p, releases, locks, stage_images(kube, p), now)
        for p in pipelines(kube, namespace, args.application)
    ]
    if not tables:
        out(f"No Pipelines in namespace {namespace}.")
        return
    emit(tables, args, out)


def stage_images(kube: Kube, pipeline: dict[str, Any]) -> dict[str, list[str]]:
    """What each stage's first target workload runs now (container images), by stage name."""
    parsed = parse_pipeline(pipeline["metadata"]["name"], pipeline.get("spec") or {})
    if isinstance(parsed, Problem):
        return {}
    out: dict[str, list[str]] = {}
    for stage in parsed.stages:
        try:
            found = Resources(kube).find_workloads(stage.targets[0])[:1]
        except ApiError:
            found = ()  # not allowed to read it: the row shows "-"
        out[stage.name] = list(found[0].containers.values()) if found else []
    return out


def show_history(kube: Kube, namespace: str, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    (pipeline,) = pipelines(kube, namespace, args.application)[:1]
    emit([views.history_table(pipeline, datetime.now(UTC))], args, out)


def press(kube: Kube, namespace: str, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    if getattr(args, "application", None):
        (pipeline,) = pipelines(kube, namespace, args.application)[:1]
        current = views.current_release(pipeline)
        if current is None:
            raise PluginError(
                f"{args.application} has nothing in production yet; there is nothing to {args.action}"
            )
        release_namespace, release = current.split("/", 1)
    else:
        release_namespace, release = namespace, args.release
        if kube.get(custom_path("releases", namespace, release)) is None:
            raise PluginError(
                f"Release {release!r} not found in namespace {namespace!r} "
                f"(kubectl get releases -n {namespace})"
            )
    user = whoami(kube)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    decision = {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "ReleaseDecision",
        "metadata": {
            "name": f"{release}-{args.action.lower()}-{stamp}"[:253],
            "namespace": release_namespace,
        },
        "spec": {
            "release": release,
            "action": args.action,
            "decidedBy": user,
            "reason": args.reason or f"kubectl gantry {args.command}",
        },
    }
    created = kube.create(custom_path("releasedecisions", release_namespace), decision)
    out(
        f"releasedecision.gantry.dev/{created['metadata']['name']} created: "
        f"{args.action} on {release} as {user}\n"
        f"follow it: kubectl get releasedecision {created['metadata']['name']} -n {release_namespace} -w"
    )


def handle_lock(kube: Kube, namespace: str, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    now = datetime.now(UTC)
    if args.verb == "status":
        found = kube.list_items(custom_path("environmentlocks", namespace))
        if args.environment:
            found = [lock for lock in found if lock["metadata"]["name"] == args.environment]
        emit([views.lock_table(sorted(found, key=lambda lock: lock["metadata"]["name"]), now)], args, out)
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
    resources.freeze_by_hand(namespace, args.environment, None)
    if locks.from_object(body).frozen is not None:  # an emergency's freeze: lifting it is an override
        resources.update_lock(
            namespace,
            args.environment,
            lambda state, lease, seen: (locks.unfreeze(state), None),
            datetime.now(UTC),
        )
    out(f"environmentlock.gantry.dev/{args.environment} unfrozen")


def whoami(kube: Kube) -> str:
    """The caller's user name as the API server sees it (SelfSubjectReview), else the kubeconfig's."""
    try:
        review = kube.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        name = ((review.get("status") or {}).get("userInfo") or {}).get("username")
        if name:
            return str(name)
    except ApiError:
        pass
    return str(kubeconfig_context().get("user") or os.environ.get("USER") or "unknown")


def entry() -> None:
    sys.exit(main())
