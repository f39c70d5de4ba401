# The entry points: `make dev` runs the whole system locally, `make test` runs every check.
# Python tools go into .venv; Rust targets through rustup. Nothing else needs installing by hand.

SHELL := /bin/bash
VENV := .venv
PORT ?= 3000
MOTO_PORT ?= 4566
FUNCTIONS := auth users clinics appointments billing relay notifications ehr docs

.PHONY: help setup dev mail audit-verify totp test lint unit emulator-test contract build deploy bench soak fmt clean

help:
	@echo "make dev     local stack: emulated AWS, every function on 127.0.0.1:$(PORT), demo data"
	@echo "make mail    print the account mail (verification, invitation, reset links) make dev queued"
	@echo "make audit-verify  seal the demo clinic's audit trail so far and verify every sealed day"
	@echo "make totp    the demo super admin's current authenticator code (SECRET=... for another)"
	@echo "make test    formatting, clippy, cfn-lint, every test against the emulator, the contract"
	@echo "make lint    formatting, clippy and cfn-lint only"
	@echo "make contract  schemathesis against a fresh stack's OpenAPI document, as four roles"
	@echo "make build   arm64 Lambda binaries with cargo-lambda (into target/lambda/)"
	@echo "make deploy  sam build && sam deploy --guided"
	@echo "make bench   binary sizes, cold starts vs two hello-world floors, AWS calls and depth per operation"
	@echo "make soak    MINUTES (10) of CLIENTS (16) driving the local gateway; latency, errors, memory"

$(VENV)/.installed: infra/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

$(VENV)/.build-installed: infra/requirements-build.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements-build.txt
	touch $@

setup: $(VENV)/.installed
	@if command -v rustup >/dev/null; then rustup component add rustfmt clippy >/dev/null; fi

dev: setup
	cargo build -p local-stack
	MOTO_PORT=$(MOTO_PORT) MOTO_LOG=target/moto-dev.log infra/with-moto.sh target/debug/local-stack dev --port $(PORT)

mail:
	@cargo build -q -p local-stack
	@set -a && source .local/stack.env && AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test target/debug/local-stack mail

audit-verify:
	@cargo build -q -p local-stack
	@test -f .local/stack.env || { echo "make dev is not running (no .local/stack.env)"; exit 1; }
	@set -a && source .local/stack.env && AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test target/debug/local-stack audit seal && AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test target/debug/local-stack audit verify

totp:
	@cargo build -q -p local-stack
	@target/debug/local-stack totp $(SECRET)

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml

emulator-test: $(VENV)/.installed
	$(VENV)/bin/python -m unittest discover -s infra/tests -v

unit: setup emulator-test
	infra/with-moto.sh cargo test --workspace --all-targets

CONTRACT_EXAMPLES ?= 5
# The OpenAPI document as a contract: schemathesis against a fresh stack, as four roles.
contract: setup
	# The workspace's feature set, as `make unit` built it: nothing is compiled twice.
	cargo build --workspace --all-targets
	infra/with-moto.sh target/debug/local-stack contract --examples $(CONTRACT_EXAMPLES)

test: lint unit contract

build: $(VENV)/.build-installed
	@if command -v rustup >/dev/null; then rustup target add aarch64-unknown-linux-gnu >/dev/null; fi
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 $(addprefix --package ,$(FUNCTIONS))
	@ls -l target/lambda/*/bootstrap

deploy: $(VENV)/.build-installed
	@command -v sam >/dev/null || { echo "deploy needs the AWS SAM CLI (pip install aws-sam-cli) and AWS credentials"; exit 1; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam build --beta-features
	sam deploy --guided

bench: setup
	cargo build --release $(addprefix -p ,$(FUNCTIONS)) -p local-stack --bins
	infra/with-moto.sh target/release/local-stack bench target/release/hello-lambda target/release/hello-kms $(addprefix target/release/,$(filter-out notifications,$(FUNCTIONS))) target/release/notifications-worker target/release/notifications-events target/release/notifications-api target/release/notifications-reminders target/release/appointments-sweep target/release/appointments-events target/release/billing-sweep target/release/billing-events target/release/billing-stats target/release/ehr-audit-seal

MINUTES ?= 10
CLIENTS ?= 16
soak: setup
	cargo build -p local-stack
	infra/with-moto.sh target/debug/local-stack soak --minutes $(MINUTES) --clients $(CLIENTS)

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV) .local
