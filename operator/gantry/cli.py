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

    args = parser.parse_args(argv)
    if args.command == "run":
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        config = Config.from_env()
        if args.namespace:
            config = replace(config, namespaces=tuple(args.namespace))
        if args.peering:
            config = replace(config, peering=args.peering)
        if args.interval:
            config = replace(config, reconcile_interval=args.interval)
        from gantry.runner import run as run_operator  # Kopf is slow to import; not needed for --help

        run_operator(config)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
