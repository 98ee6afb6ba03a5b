# mcp-ledger — every developer and CI entry point. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CRDGEN := $(CARGO) run --quiet --locked -p mcp-ledger-operator --bin crdgen --
CRDGEN_ARGS := --crd-dir crds --crd-dir charts/mcp-ledger/crds --schema-dir crds/schema

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: toolchain
toolchain:
	@scripts/ensure-toolchain.sh

PYTHON := .venv/bin/python

.PHONY: peers
peers: ## Install the real test peers: MCP Python and TypeScript SDKs, OTLP receivers, Prometheus, @grafana/schema + TypeScript
	@scripts/install-peers.sh

.PHONY: generate
generate: toolchain ## Regenerate the CRD YAML (crds/, chart) and JSON schemas from the Rust types
	$(CRDGEN) $(CRDGEN_ARGS)

.PHONY: generate-check
generate-check: toolchain ## Fail when the generated files differ from the Rust types
	$(CRDGEN) $(CRDGEN_ARGS) --check

.PHONY: fmt-check
fmt-check: toolchain
	$(CARGO) fmt --all --check

.PHONY: clippy
clippy: toolchain
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

.PHONY: lint
lint: fmt-check clippy ## rustfmt check and clippy with -D warnings

.PHONY: unit
unit: toolchain peers ## All Rust tests (unit and in-process integration); cluster tests skip
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --locked --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --locked --workspace --no-fail-fast; \
	fi

.PHONY: test
test: lint generate-check unit ## Everything CI runs: lint, generated-files check, all tests

.PHONY: e2e
e2e: toolchain ## Cluster tests against the cluster KUBECONFIG points to (print why they skip when it points nowhere)
	@scripts/install-helm.sh >/dev/null
	$(CARGO) build --locked -p mcp-ledger-operator --bin mcp-ledger-operator -p mcp-ledger-agent --bin mcp-ledger-agent
	MCP_LEDGER_E2E=1 MCP_LEDGER_OPERATOR_BIN=$(CURDIR)/target/debug/mcp-ledger-operator \
		MCP_LEDGER_AGENT_BIN=$(CURDIR)/target/debug/mcp-ledger-agent \
		$(CARGO) test --locked --no-fail-fast -p mcp-ledger-tests --test 'e2e_*' -- --nocapture --test-threads=1

IMAGE_TAG ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/mcp-ledger/Chart.yaml)

.PHONY: image
image: ## Build the operator and agent images (needs a Docker engine; none on the CI machine)
	docker build -f docker/Dockerfile --build-arg BIN=mcp-ledger-operator -t mcp-ledger/operator:$(IMAGE_TAG) .
	docker build -f docker/Dockerfile --build-arg BIN=mcp-ledger-agent -t mcp-ledger/agent:$(IMAGE_TAG) .

.PHONY: demo
demo: toolchain ## Run a real MCP server behind the agent, send real traffic, print the redacted records
	@scripts/demo.sh

.PHONY: bench
bench: toolchain ## Benchmarks: redaction MB/s; req/s and latency direct vs. through the agent; agent RSS; disk buffer records/s; access decision ns; node agent records/s per core (receive, enrich, buffer, export)
	@scripts/install-peers.sh --bench
	$(CARGO) build --locked --release -p mcp-ledger-agent
	$(CARGO) bench --locked -p mcp-ledger-agent --bench redact
	$(CARGO) bench --locked -p mcp-ledger-agent --bench proxy
	$(CARGO) bench --locked -p mcp-ledger-agent --bench buffer
	$(CARGO) bench --locked -p mcp-ledger-agent --bench policy
	$(CARGO) bench --locked -p mcp-ledger-agent --bench node
