"""The README's first command stays true: the quick-start demo runs and ends as it says it does,
every time: two demos run side by side, each loading the machine for the other."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import services
from tests.harness.cluster import ROOT
from tests.harness.observability import require_binaries

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.emulator_only("the demo embeds the emulator whatever the tier: the emulator run covers it"),
]


def ends_as_the_readme_says(out: str) -> None:
    assert "release tags Gantry pushed to origin: v1.4.0, v1.4.1, v1.5.0, v1.5.1" in out
    assert "<Reason." not in out  # what a person reads, not a Python repr
    assert "quarantined digests" in out and f"sha256:{'c' * 64} of gantry/shop-v1.5.1" in out
    for command in (line for line in out.splitlines() if line.startswith("$ gantry release create")):
        assert "--revision " in command and "@sha256:" in command
        image = command.split("--artifact web=")[1].split()[0]
        assert len(image.split("@sha256:")[1]) == 64, command  # pasteable: the whole digest
    rollback, hotfix = out.split("== 4.")[1].split("== 5.")
    assert "shop-v1.5.1   shop          v1.5.1    RolledBack   production" in rollback
    assert "production    v1.4.0    shop-v1.4.0" in rollback  # kubectl gantry status after the rollback
    assert "ErrorRateBreach" in rollback and "Restored" in rollback
    frozen, lifted = hotfix.split("# the freeze lifted")
    assert "FROZEN BY\nstaging       -        -       -       gantry/shop-v1.4.0 (emergency" in frozen
    assert "shop-v1.4.1   shop          v1.4.1    Released     production" in frozen
    assert "production    v1.4.1    shop-v1.4.1" in frozen  # the hotfix runs in production
    assert "staging       -        -       -       -" in lifted and "git merge --no-ff origin/HOT-1" in lifted


def deployed_through_git(out: str) -> None:
    """make demo GITOPS=1: the same walk, each promotion and rollback a commit of the deploy
    repository; production only ever takes tags of what staging ran."""
    repository = out.split("== The deploy repository")[1]
    main, production, tags = repository.split("$ git ")[1:4]
    titles = [line.split(" ", 1)[1] for line in main.splitlines()[1:] if line]
    assert titles[:3] == [
        "deploy(staging): shop v1.4.1",
        "revert(staging): shop v1.5.1 rolled back",
        "deploy(staging): shop v1.5.1",
    ]
    assert "revert(staging): shop v1.5.0 rolled back" in titles  # the failed test, undone in git
    titles = [line.split(" ", 1)[1] for line in production.splitlines()[1:] if line]
    assert titles[:4] == [
        "deploy(production): shop v1.4.1",
        "revert(production): shop v1.5.1 rolled back",
        "deploy(production): shop v1.5.1",
        "deploy(production): shop v1.4.0",
    ]
    assert tags.split()[1:4] == ["shop/v1.4.0", "shop/v1.4.1", "shop/v1.5.1"]  # v1.5.0 never passed staging


# The demo under an audit hook that writes down every program it starts (subprocess.Popen and
# os.exec*/posix_spawn report their executable to audit hooks), then runs as `make demo` runs it.
RECORDING_DEMO = """
import json, os, sys
started = open(sys.argv[1], "a")
def hook(event, args):
    if event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn"):
        started.write(json.dumps(os.fsdecode(args[0])) + "\\n"); started.flush()
sys.addaudithook(hook)
from tests.harness.demo import main
sys.exit(main())
"""


def demo_programs() -> list[str]:
    return sorted(services.started_by("demo").values())


def test_two_quick_start_demos_side_by_side_both_walk_the_whole_flow(tmp_path: Path) -> None:
    """The first demo also records what it starts: every program must be on the demo's list in
    .ci/services, which `make demo` installs from (else a fresh machine stops where this passed)."""
    missing = [path for path in demo_programs() if not shutil.which(path)]
    require_binaries(missing, " ".join(services.started_by("demo")))
    record = tmp_path / "started.jsonl"
    demos = [
        subprocess.Popen(
            [sys.executable, "-c", RECORDING_DEMO, str(record)]
            if first
            else [sys.executable, "-m", "tests.harness.demo", "--gitops"],  # make demo GITOPS=1
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in (True, False)
    ]
    for demo in demos:
        out, err = demo.communicate(timeout=300)
        assert demo.returncode == 0, out[-3000:] + err[-3000:]
        ends_as_the_readme_says(out)
    deployed_through_git(out)
    started = {json.loads(line) for line in record.read_text().splitlines()}
    resolved = {shutil.which(program) or program for program in started}
    assert {"/usr/bin/prometheus", "/usr/bin/git"} <= resolved  # the recording saw the demo's programs
    unlisted = resolved - set(demo_programs()) - {sys.executable}
    assert not unlisted, f"the demo starts {sorted(unlisted)}, which .ci/services does not list for it"
