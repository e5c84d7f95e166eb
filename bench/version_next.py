"""Benchmark: `gantry version next` against python-semantic-release and commitizen.

Builds a repository (with a bare origin) whose latest release tag is followed by N commits (default
20,000; conventional commits of several types, merged as the seed's flow merges), then asks each
tool for the next version several times, checks that they agree, and prints the timings.

    make bench-versions        # or: .venv/bin/python -m bench.version_next [--commits 20000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TOOL_CONFIG = """\
[tool.semantic_release]
tag_format = "v{version}"
commit_parser = "conventional"
[tool.semantic_release.branches.main]
match = "main"
[tool.commitizen]
name = "cz_conventional_commits"
tag_format = "v$version"
version_provider = "scm"
"""


def message(i: int) -> str:
    if i % 5000 == 1:
        return f"feat(JIRA-{i}): feature {i}"
    if i % 97 == 0:
        return f"fix(JIRA-{i}): fix {i}"
    return f"{'docs' if i % 2 else 'chore'}(JIRA-{i}): change {i}"


def build(path: Path, commits: int) -> None:
    """One fast-import stream: a tagged first commit, then `commits` more, every 100th a merge."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    stream: list[bytes] = []

    def commit(mark: int, text: str, parents: list[int]) -> None:
        data = text.encode()
        stream.append(
            b"commit refs/heads/main\nmark :%d\ncommitter Dev <dev@example.com> %d +0000\n" % (mark, mark)
        )
        stream.append(b"data %d\n%s\n" % (len(data), data))
        if parents:
            stream.append(b"from :%d\n" % parents[0])
        for other in parents[1:]:
            stream.append(b"merge :%d\n" % other)
        stream.append(b"M 644 inline f\ndata %d\n%d\n\n" % (len(str(mark)) + 1, mark))

    commit(1, "feat(JIRA-1): first", [])
    stream.append(b"reset refs/tags/v1.0.0\nfrom :1\n\n")
    mark = 1
    for i in range(2, commits + 2):
        if i % 100 == 0:  # a merge commit bringing in the previous commit's sibling line
            commit(i, f"Merge branch 'dev/JIRA-{i}'", [mark, mark - 1])
        else:
            commit(i, message(i), [mark])
        mark = i
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=b"".join(stream), check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=path, check=True)
    origin = path.parent / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(origin)], cwd=path, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main", "--tags"], cwd=path, check=True)
    (path / "pyproject.toml").write_text(TOOL_CONFIG)


def timed(argv: list[str], cwd: Path, runs: int) -> tuple[float, str]:
    durations, out = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        durations.append(time.perf_counter() - started)
        out = (
            result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"(exit {result.returncode})"
        )
    return statistics.median(durations), out.removeprefix("v")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only-gantry", action="store_true", help="skip the tools compared with")
    args = parser.parse_args(argv)
    tools = {
        "gantry version next": [str(BIN / "python"), "-m", "gantry", "version", "next"],
        "semantic-release": [str(BIN / "semantic-release"), "--noop", "version", "--print"],
        "commitizen": [str(BIN / "cz"), "bump", "--get-next"],
    }
    if args.only_gantry:
        tools = {"gantry version next": tools["gantry version next"]}
    missing = [name for name, argv in tools.items() if not Path(argv[0]).exists()]
    if missing:
        print(f"missing {missing}: pip install python-semantic-release commitizen (make bench-versions does)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        started = time.perf_counter()
        build(repo, args.commits)
        took = time.perf_counter() - started
        print(f"built a repository with {args.commits} commits after v1.0.0 in {took:.1f}s")
        results = {name: timed(argv, repo, args.runs) for name, argv in tools.items()}
    ours = results["gantry version next"][0]
    print(f"\n{'tool':<22} {'median s':>9} {'next':>8} {'x slower than gantry':>22}")
    for name, (seconds, version) in results.items():
        print(f"{name:<22} {seconds:>9.3f} {version:>8} {seconds / ours:>22.1f}")
    versions = {version for _, version in results.values()}
    agree = len(versions) == 1
    others = [s for n, (s, _) in results.items() if n != "gantry version next"]
    if others:
        print(
            f"\n{'all agree' if agree else 'DISAGREE'} on {versions}; gantry is {min(others) / ours:.1f}x "
            f"faster than the fastest other tool over {args.commits} commits ({args.runs} runs each)"
        )
    shutil.rmtree(repo, ignore_errors=True)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
