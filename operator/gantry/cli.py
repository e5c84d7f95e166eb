"""The `gantry` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

from gantry import __version__
from gantry.settings import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gantry", description="Promote immutable images through environments."
    )
    parser.add_argument("--version", action="version", version=f"gantry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator (kopf run with Gantry's handlers and settings)")
    run.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    run.add_argument(
        "--peering", help="Kopf peering name: run several replicas, one active (default: standalone)"
    )
    run.add_argument("--interval", type=float, help="seconds between reconcile ticks of an in-flight Release")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--wait",
        action="store_true",
        help="keep retrying while no API server answers (default: fail at once)",
    )

    version = commands.add_parser("version", help="release versions from Conventional Commits")
    version_commands = version.add_subparsers(dest="version_command", required=True)
    upcoming = version_commands.add_parser(
        "next", help="print the next release tag (exit 3: nothing to release)"
    )
    upcoming.add_argument("--repo", default=".", help="the git repository (default: .)")
    upcoming.add_argument("--rev", default="HEAD", help="count commits reachable from this revision")
    upcoming.add_argument("--explain", action="store_true", help="list the commits that decided it, by type")
    upcoming.add_argument(
        "--major-on-zero", action="store_true", help="let breaking changes bump 0.x to 1.0.0"
    )

    commits = commands.add_parser("commits", help="commit message rules")
    commit_commands = commits.add_subparsers(dest="commits_command", required=True)
    check = commit_commands.add_parser(
        "check", help="each commit is type(TICKET): description (the seed's rule)"
    )
    check.add_argument("--repo", default=".")
    check.add_argument("--range", default="HEAD", dest="spec", help="A..B (default: all of HEAD)")

    branch = commands.add_parser("branch", help="ticket branch rules")
    branch_commands = branch.add_subparsers(dest="branch_command", required=True)
    ready = branch_commands.add_parser(
        "check",
        help="uid/TICKET name, rebased onto main, every commit type(TICKET), no merges (before merging)",
    )
    ready.add_argument("--repo", default=".")
    ready.add_argument("--branch", default="HEAD", help="the branch to check (default: the checked-out one)")
    ready.add_argument("--main", default="main", help="the branch it merges into (default: main)")
    ready.add_argument("--name", help="the branch's name, when --branch is a commit (CI's detached HEAD)")

    releases = commands.add_parser("release", help="Releases for CI jobs")
    release_commands = releases.add_subparsers(dest="release_command", required=True)
    create = release_commands.add_parser(
        "create", help="create the Release of a commit's images (tags resolved to digests); prints its name"
    )
    create.add_argument("--application", required=True)
    create.add_argument("--revision", required=True, help="the commit the images were built from")
    create.add_argument(
        "--artifact", action="append", required=True, help="NAME=IMAGE by tag or digest (repeat)"
    )
    create.add_argument("--repository", help="the git repository (default: origin of the repository here)")
    create.add_argument("--pipeline", help="default: the application's name")
    create.add_argument(
        "--version", dest="release_version", help="vX.Y.Z (default: computed from the commits)"
    )
    create.add_argument("--name", help="the Release's name (default: <application>-<12 hex of the commit>)")
    create.add_argument(
        "--hotfix",
        action="store_true",
        help="a hotfix: the revision is on the emergency's HOT-<n> branch (patch version, passes the freeze)",
    )
    create.add_argument("-n", "--namespace", default="gantry")
    create.add_argument("--insecure-registry", action="append", default=[], help="a plain-HTTP registry host")

    args = parser.parse_args(argv)
    if args.command == "release":
        return _release_create(args)
    if args.command in ("version", "commits", "branch"):
        return _versioning(args)
    if args.command == "run":
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not args.verbose:
            # Kopf says "Handler ... succeeded." at INFO on every watch event it hands us: thousands
            # of lines that say nothing, and their cost on the loop that drives the Releases. Its
            # warnings and errors stay; gantry's own INFO lines say what happened.
            logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        config = Config.from_env()
        if args.namespace:
            config = replace(config, namespaces=tuple(args.namespace))
        if args.peering:
            config = replace(config, peering=args.peering)
        if args.interval:
            config = replace(config, reconcile_interval=args.interval)
        from gantry.runner import StartupFailed
        from gantry.runner import run as run_operator  # Kopf is slow to import; not needed for --help

        try:
            run_operator(config, wait_for_cluster=args.wait)
        except StartupFailed as failed:
            print(f"gantry run: {failed}", file=sys.stderr)
            return 1
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


def _versioning(args: argparse.Namespace) -> int:
    from gantry.adapters.git import GitError, Repository
    from gantry.versioning import check_branch, check_commits, next_release

    try:
        repo = Repository(args.repo)
        if args.command == "version":
            result = next_release(repo, args.rev, args.major_on_zero)
            if args.explain:
                print(result.explanation(), file=sys.stderr)
            if result.tag is None:
                since = result.base or "the first commit"
                print(f"no release: no feat, fix, perf or breaking change since {since}", file=sys.stderr)
                return 3
            print(result.tag)
            return 0
        if args.command == "branch":
            problems = check_branch(repo, args.branch, args.main, args.name)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        offenders = check_commits(repo, args.spec)
    except GitError as error:
        print(f"gantry: {error}", file=sys.stderr)
        return 2
    for commit, why in offenders:
        print(f"{commit.sha[:10]} {commit.header!r}: {why}", file=sys.stderr)
    return 1 if offenders else 0


def _release_create(args: argparse.Namespace) -> int:
    from kubernetes import config as k8s_config

    from gantry.adapters.kube import UNREACHABLE, Kube, load_api_client, no_cluster, unreachable
    from gantry.adapters.registry import RegistryClient, RegistryError
    from gantry.publish import PublishError, Request, create, docker_credentials, origin_url

    host = "the API server"
    try:
        api = load_api_client(retries=0)
        host = api.configuration.host
        request = Request(
            namespace=args.namespace,
            application=args.application,
            revision=args.revision,
            repository=args.repository or origin_url(),
            artifacts=args.artifact,
            pipeline=args.pipeline,
            version=args.release_version,
            name=args.name,
            hotfix=args.hotfix,
        )
        client = RegistryClient(
            credentials=docker_credentials(), tls={host: "Disabled" for host in args.insecure_registry}
        )
        name, made = create(Kube(api), request, client)
    except (PublishError, RegistryError) as error:
        print(f"gantry release create: {error}", file=sys.stderr)
        return 1
    except k8s_config.ConfigException as error:
        print(f"gantry release create: {no_cluster(error)}", file=sys.stderr)
        return 1
    except UNREACHABLE as error:
        print(f"gantry release create: {unreachable(host, error)}", file=sys.stderr)
        return 1
    print(f"release.gantry.dev/{name} {'created' if made else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
