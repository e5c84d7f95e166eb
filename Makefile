# Two entry points, both self-contained on a fresh machine with Python 3.11+:
#   make demo   set up, then walk Releases through staging and production against the embedded API emulator
#               (make demo GITOPS=1: the same walk, staging and production deployed through git)
#   make test   set up, then lint, type-check and run every test
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo sandbox test lint unit e2e envtest-assets envtest bench bench-scale bench-versions clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The demo runs a real Prometheus and Alertmanager and real git: .ci/services lists what it starts,
# and .ci/install-services installs whatever of that is missing (Debian's packages).
demo: $(STAMP)
	.ci/install-services --for demo
	$(BIN)/python -m tests.harness.demo $(if $(GITOPS),--gitops)

# The emulated API server and the operator with examples/ loaded, for real kubectl, until Ctrl-C.
sandbox: $(STAMP)
	.ci/install-services --for sandbox
	$(BIN)/python -m tests.harness.sandbox

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator/gantry
	$(BIN)/lint-imports

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: lint
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$status

# The envtest tier: a real kube-apiserver and etcd, built from their Go modules at the versions
# pinned in .ci/envtest/go.mod into ~/.cache/gantry-envtest (GANTRY_ENVTEST_HOME), build cache
# included: minutes the first time, a second when nothing changed. Needs Go 1.26+.
envtest-assets:
	.ci/build-envtest-assets

# The e2e suite (and the chart's install) on that real API server; every skip names its reason.
envtest: $(STAMP)
	.ci/install-services --for envtest
	@assets="$$(.ci/build-envtest-assets)" || exit 1; \
	KUBEBUILDER_ASSETS="$$assets" $(BIN)/python -m pytest -m e2e -W ignore::urllib3.exceptions.InsecureRequestWarning; \
	status=$$?; if [ $$status -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$status

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

# Figures, not assertions: needs Debian's prometheus package (see .ci/run).
bench: $(STAMP)
	$(BIN)/python -m bench.time_to_rollback
	$(BIN)/python -m bench.lead_time
	$(BIN)/python -m bench.gitops_promotion

# Compares with python-semantic-release and commitizen, installed here only for the comparison.
# Latency, requests, memory and start-up at 0 / 1,000 / 5,000 / 20,000 Releases, and a 500-Release burst.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale

bench-versions: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check python-semantic-release commitizen
	$(BIN)/python -m bench.version_next

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
