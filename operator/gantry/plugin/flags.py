"""`kubectl gantry`'s command line, by kubectl's conventions: global flags anywhere.

kubectl refuses its own flags before a plugin's name (`kubectl -n x gantry` is an error), so the
plugin must take `-n`, `-A`, `-o`, `--context` and `--kubeconfig` wherever they come: before the
command (`kubectl gantry -n x status`) or after it (`kubectl gantry status shop -n x`). Each
command repeats them with no default of its own, so a flag given after the command wins and one
given before it is not reset.
"""

from __future__ import annotations

import argparse

BUTTONS = {
    "approve": "Approve",
    "fail-forward": "FailForward",
    "rollback": "Rollback",
    "emergency": "Emergency",
    "lift-quarantine": "LiftQuarantine",
    "override-freeze": "OverrideFreeze",
}
ON_APPLICATION = frozenset({"rollback", "emergency"})  # act on what production runs now
CONFIRMED = frozenset({"rollback", "emergency"})  # change production: asked before, unless --yes
OUTPUTS = ("table", "json", "yaml")
SHELLS = ("bash", "zsh")


def global_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "-n",
        "--namespace",
        default=default(None),
        help="where the Pipelines and Releases live (default: the context's)",
    )
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=default(False),
        help="every namespace (status, lock status)",
    )
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default=default("table"), help="json and yaml: raw values"
    )
    parser.add_argument("--context", default=default(None), help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default(None), help="the kubeconfig file to use")


DECISION_WAIT = 10.0  # seconds a button waits for the decision's outcome: Applied, Ignored, Rejected


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kubectl gantry", description="Gantry releases: status and on-call decisions"
    )
    global_flags(root, defaults=True)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        global_flags(sub, defaults=False)
        return sub

    status = command(
        "status", "each environment's version, digest and lock; what is in flight; what waits on you"
    )
    status.add_argument("application", nargs="?", help="one application (default: all in the namespace)")
    status.add_argument("-w", "--watch", action="store_true", help="print again every 2 s until Ctrl-C")
    status.set_defaults(handler="status")

    history = command("history", "what ran in production, who decided")
    history.add_argument("application")
    history.set_defaults(handler="history")

    for name, action in BUTTONS.items():
        what = "the Release production runs now" if name in ON_APPLICATION else "a Release"
        button = command(name, f"{action} decision on {what} (a ReleaseDecision made as you)")
        button.add_argument("application" if name in ON_APPLICATION else "release")
        button.add_argument("--reason", default="", help="why; kept in the decision and the ledger")
        if name == "lift-quarantine":
            button.add_argument("--digest", help="lift only this digest (default: all of the Release's)")
        if name in CONFIRMED:
            button.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        button.add_argument(
            "--wait",
            type=float,
            default=DECISION_WAIT,
            metavar="SECONDS",
            help=f"wait this long for the operator's verdict (default {DECISION_WAIT:g}; 0: do not wait)",
        )
        button.set_defaults(handler="press", action=action)

    lock = command("lock", "EnvironmentLocks: status, freeze, unfreeze")
    lock.add_argument("verb", choices=("status", "freeze", "unfreeze"))
    lock.add_argument("environment", nargs="?")
    lock.add_argument("--reason", default="")
    lock.set_defaults(handler="lock")

    completion = command(
        "completion", "print a shell completion script: source <(kubectl gantry completion bash)"
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(handler="completion")
    return root


def words(argv: list[str]) -> list[str]:
    """What may come next after `argv` (the words typed so far, the last one unfinished)."""
    root = parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    typed = [w for w in argv[:-1] if not w.startswith("-")]
    flags = [o for a in root._actions for o in a.option_strings if o.startswith("--")]
    command = next((w for w in typed if w in commands.choices), None)
    if command is None:
        candidates = [*commands.choices, *flags]
    else:
        sub = commands.choices[command]
        candidates = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
        for action in sub._actions:
            if action.choices and not action.option_strings and not isinstance(action.choices, dict):
                candidates.extend(str(c) for c in action.choices)
    prefix = argv[-1] if argv else ""
    return sorted(c for c in dict.fromkeys(candidates) if c.startswith(prefix))


def completion_script(shell: str) -> str:
    """A script that asks `kubectl-gantry __complete` for the words: one source of truth."""
    if shell == "bash":
        return """# kubectl gantry completion (bash): source <(kubectl gantry completion bash)
_kubectl_gantry() {
    local words=("${COMP_WORDS[@]:1:COMP_CWORD}")
    COMPREPLY=($(kubectl-gantry __complete "${words[@]}" 2>/dev/null))
}
complete -F _kubectl_gantry kubectl-gantry
"""
    return """#compdef kubectl-gantry
# kubectl gantry completion (zsh): source <(kubectl gantry completion zsh)
_kubectl_gantry() {
    local -a candidates
    candidates=(${(f)"$(kubectl-gantry __complete ${words[2,CURRENT]} 2>/dev/null)"})
    compadd -a candidates
}
compdef _kubectl_gantry kubectl-gantry
"""


def value_flags() -> frozenset[str]:
    """The options that take a value (-n NAMESPACE, --reason TEXT, ...), read from the parser."""
    root = parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    actions = [*root._actions, *(a for sub in commands.choices.values() for a in sub._actions)]
    return frozenset(o for a in actions if a.option_strings and a.nargs != 0 for o in a.option_strings)


VALUE_FLAGS = value_flags()
