"""The commands a person runs to act on a Release: one home for their spelling, so an alert, a
status message and `kubectl gantry status` name the same command (the plugin's verbs)."""

from __future__ import annotations

REASON = "--reason '…'"


def gantry(namespace: str) -> str:
    return f"kubectl gantry -n {namespace}"


def approve(namespace: str, release: str) -> str:
    return f"{gantry(namespace)} approve {release} {REASON}"


def rollback(namespace: str, application: str) -> str:
    return f"{gantry(namespace)} rollback {application} {REASON}"


def fail_forward(namespace: str, release: str) -> str:
    return f"{gantry(namespace)} fail-forward {release} {REASON}"


def emergency(namespace: str, application: str) -> str:
    return f"{gantry(namespace)} emergency {application} {REASON}"


def lift_quarantine(namespace: str, release: str) -> str:
    return f"{gantry(namespace)} lift-quarantine {release} {REASON}"


def status(namespace: str, application: str) -> str:
    return f"{gantry(namespace)} status {application}"


def merge_back(branch: str, main: str = "main") -> str:
    """The way a hotfix gets back to main: a person merges it (main may be protected; Gantry
    never pushes there), as a merge commit so the hotfix's tag is reachable from main."""
    merge = f"git merge --no-ff origin/{branch}"
    return f"git fetch origin && git checkout {main} && {merge} && git push origin {main}"


def override_freeze(namespace: str, release: str) -> str:
    """Break glass: this one Release passes every freeze (alerted, and on the record)."""
    return f"{gantry(namespace)} override-freeze {release} {REASON}"


def unfreeze(environment: str) -> str:
    return f"kubectl gantry lock unfreeze {environment}"


def on_breach(namespace: str, application: str, release: str) -> str:
    """What a person may decide when a bake breached and waits for them."""
    return (
        f"decide: {rollback(namespace, application)} | {emergency(namespace, application)} | "
        f"{fail_forward(namespace, release)}"
    )


def on_hold(namespace: str, application: str, release: str) -> str:
    """What a person may decide for a Held Release (the bake could not decide, or a rollback it
    started found nothing earlier)."""
    return (
        f"decide: {approve(namespace, release)} | {rollback(namespace, application)} | "
        f"{fail_forward(namespace, release)}"
    )
