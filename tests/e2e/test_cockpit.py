"""The web view, served by the real operator: a real browser (Debian's chromium) shows a running
flow (the stages with what each runs, the lock's holder and queue, the bake's evaluations drawn
against the threshold, the ledger) and nothing it can write; behind an authenticating proxy's
headers, decisions are made as that person, and the API server's RBAC and admission policy judge
them as they judge the person's own kubectl."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.e2e.test_production import App
from tests.e2e.test_rbac import NAMESPACE, await_policy, envtest_tier, lift_policies, the_team
from tests.harness import services
from tests.harness.cluster import Cluster
from tests.harness.observability import Alertmanager, MetricsApp, Prometheus, free_port, in_ci, wait_http
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = services.program("chromium"), services.program("chromium-driver")
# Where the browser test leaves its screenshot (the README's comes from here): GANTRY_SCREENSHOTS.
SCREENSHOTS = os.environ.get("GANTRY_SCREENSHOTS", "")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    return call(urllib.request.Request(url, headers=headers or {}))


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    return call(urllib.request.Request(url, data=data, headers=sent, method="POST"))


def call(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture
def web_operator(cluster: Cluster) -> Iterator[tuple[OperatorThread, str]]:
    port = free_port()
    running = OperatorThread(replace(FAST, web_port=port)).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/state")
    yield running, url
    running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        message = f"needs {', '.join(missing)}: .ci/install-services --for tests (chromium chromium-driver)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_browser_shows_the_flow_its_lock_and_its_bake_and_offers_commands_not_buttons(
    cluster: Cluster,
    web_operator: tuple[OperatorThread, str],
    browser: Any,
    namespace: str,
    observability_stack: tuple[MetricsApp, Prometheus, Alertmanager],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    metrics, prometheus, alertmanager = observability_stack
    _, url = web_operator
    app = App(cluster, namespace, f"prod-{namespace}-web", metrics, prometheus, alertmanager)
    app.setup()
    pipeline = m.production_pipeline(namespace, app.prod, prometheus.url, alertmanager.url, bakeSeconds=600)
    pipeline["spec"]["stages"][1].update(lock=True, environment="production")  # held while it bakes
    cluster.apply(pipeline)
    try:
        app.traffic(20, error_ratio=0.02)
        app.release("shop-v1", "v1")
        baking = app.wait("shop-v1", "Baking", "Released", "Failed", "Held")
        assert baking["status"]["phase"] == "Baking"
        app.release("shop-v2", "v2")  # passes staging, then waits: production is busy baking shop-v1
        blocked = app.wait("shop-v2", "Blocked", "Failed")
        assert blocked["status"]["reason"] == "ProductionBusy"
        browser.get(f"{url}/?namespace={namespace}")
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)

        def bake_points(_: Any) -> list[Any]:
            found: list[Any] = browser.find_elements(By.CSS_SELECTOR, "svg.bake circle.point")
            return found if len(found) >= 3 else []

        points = wait.until(bake_points)
        stages = browser.find_elements(By.CSS_SELECTOR, ".application .stage")
        by_environment = {s.get_attribute("data-environment"): s.text for s in stages}
        assert list(by_environment) == ["staging", "production"]  # left to right, as the Pipeline has them
        assert "v1.1.0" in by_environment["staging"] and "v1.0.0" in by_environment["production"]
        assert "healthy" in by_environment["production"]
        holder = browser.find_element(By.CSS_SELECTOR, '.stage[data-environment="production"] .lock-holder')
        assert holder.text == f"{namespace}/shop-v1"
        assert {p.get_attribute("class") for p in points} == {"point Healthy"}
        threshold = browser.find_element(By.CSS_SELECTOR, "svg.bake line.threshold")
        assert float(threshold.get_attribute("y1")) < max(float(p.get_attribute("cy")) for p in points) + 80
        flight = browser.find_element(By.CSS_SELECTOR, 'tr[data-release="shop-v1"]').text
        assert "Baking" in flight
        waiting = browser.find_element(By.CSS_SELECTOR, 'tr[data-release="shop-v2"]').text
        assert "production is busy with" in waiting
        dora = browser.find_element(By.CSS_SELECTOR, ".application .dora").text  # from the ledger
        assert "deploys / day\n1.00" in dora and "change failure rate\n0 %" in dora, dora
        commands = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".commands code")]
        assert f"kubectl gantry -n {namespace} rollback shop --reason '…'" in commands
        assert not browser.find_elements(By.CSS_SELECTOR, "button.act")  # read-only: nothing to press
        assert browser.find_element(By.ID, "viewer").text == "read-only"
        shot = tmp_path / "cockpit.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(SCREENSHOTS) / "cockpit.png")
        browser.set_window_size(390, 844)  # a phone: the stages stack, nothing is cut off
        wide, window = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert wide <= window, f"the page is {wide}px wide in a {window}px wide window"
    finally:
        metrics.set(app.prod, 0)


def test_the_web_view_refuses_what_it_should_not_serve(web_operator: tuple[OperatorThread, str]) -> None:
    _, url = web_operator
    assert get(f"{url}/api/state?namespace=..%2Fkube-system")[0] == 400
    status, said = post(f"{url}/api/decisions", {"namespace": "team", "release": "x", "action": "Approve"})
    assert status == 403 and "read-only" in said["message"]
    with urllib.request.urlopen(f"{url}/", timeout=10) as response:
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}/static/..%2F..%2Fcockpit.py", timeout=10)
    assert missing.value.code == 404


IMPERSONATOR = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "gantry-web-view-impersonator"},
        "rules": [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "gantry-web-view-impersonator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "gantry-web-view-impersonator",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "gantry", "namespace": "gantry"}],
    },
]


def test_behind_the_proxy_a_decision_is_made_as_the_person_and_judged_as_theirs(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator runs as its ServiceAccount with examples/rbac.yaml and the chart's
    impersonation rule: alice (a developer) cannot approve through the view any more than with
    kubectl; bob (on-call) can, and the decision is his; without the proxy's header, or from
    another site, nothing is written."""
    if not cluster.emulated and not envtest_tier():
        pytest.skip("acts as test identities by token: the emulator or envtest (a real cluster has its own)")
    manifests = the_team(cluster, *IMPERSONATOR)
    monkeypatch.setenv("KUBECONFIG", str(cluster.as_user("operator", tmp_path).kubeconfig))
    port = free_port()
    operator = OperatorThread(
        replace(FAST, web_port=port, web_proxy_headers=True), RecordingAlerter()
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        users = {name: cluster.as_user(name, tmp_path) for name in ("alice", "bob")}
        await_policy(users["bob"], enforced=True)
        users["alice"].apply(m.release(NAMESPACE, "shop-v1", "v1"))
        verified = cluster.wait_for_phase(NAMESPACE, "shop-v1", "Verified", "Failed", "Blocked")
        assert verified["status"]["phase"] == "Verified"
        approve = {"namespace": NAMESPACE, "release": "shop-v1", "action": "Approve", "reason": "looks good"}

        status, state = get(f"{url}/api/state?namespace={NAMESPACE}", {"X-Forwarded-User": "bob"})
        assert status == 200 and state["viewer"] == {"user": "bob", "canDecide": True}
        (release,) = state["applications"][0]["releases"]
        assert f"kubectl gantry -n {NAMESPACE} approve shop-v1 --reason '…'" in release["commands"]

        assert post(f"{url}/api/decisions", approve)[0] == 403  # no proxy header: read-only
        elsewhere = {
            "X-Forwarded-User": "bob",
            "X-Forwarded-Groups": "shop-oncall",
            "Origin": "https://evil.example",
        }
        assert post(f"{url}/api/decisions", approve, elsewhere)[0] == 403
        developer = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "shop-developers"}
        status, said = post(f"{url}/api/decisions", approve, developer)
        assert status == 422 and "need the approve verb" in said["message"], said
        assert not cluster.list("ReleaseDecision", NAMESPACE)  # nothing written for any of them

        on_call = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "shop-oncall"}
        status, said = post(f"{url}/api/decisions", approve, on_call)
        assert status == 201, said
        (decision,) = cluster.list("ReleaseDecision", NAMESPACE)
        assert (
            decision["spec"]["decidedBy"] == "bob" and decision["spec"]["reason"] == "looks good (web view)"
        )
        released = cluster.wait_for_phase(NAMESPACE, "shop-v1", "Released", "Failed", "Blocked")
        assert released["status"]["phase"] == "Released", released["status"]["message"]
        assert [(d["action"], d["decidedBy"]) for d in released["status"]["decisions"]] == [
            ("Approve", "bob")
        ]
    finally:
        operator.stop()
        lift_policies(cluster, manifests, cluster.as_user("bob", tmp_path))
