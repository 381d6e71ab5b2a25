# Roundhouse — `make run` serves the platform, `make test` runs every test.
# Both install what is missing (and only that) on a fresh Debian machine with Rust.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

# Leptos reads the output name at compile time (hydration script URLs): keep it identical
# for every cargo invocation so nothing is rebuilt for a changed environment.
export LEPTOS_OUTPUT_NAME := roundhouse
export CARGO_TARGET_DIR ?= $(CURDIR)/target
TARGET := $(CARGO_TARGET_DIR)
SITE := $(TARGET)/site
PKG := $(SITE)/pkg
WASM_BINDGEN_VERSION := 0.2.130
ROUNDHOUSE_ADDR ?= 127.0.0.1:3000
BIN := $(TARGET)/debug/roundhouse

export LEPTOS_SITE_ROOT := $(SITE)
export LEPTOS_SITE_PKG_DIR := pkg
export LEPTOS_ENV ?= DEV

.PHONY: run test tools sandbox build server site wasm db test-unit test-e2e bench release clean-data chromium

## tools: the wasm target, wasm-bindgen, node tools (Tailwind, wasm-opt, Playwright) — only when missing
tools:
	@command -v cargo >/dev/null || { echo "Rust is required: https://rustup.rs"; exit 1; }
	@rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if ! wasm-bindgen --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)"; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (one time, several minutes)"; \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); fi
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	@if [ ! -x node_modules/.bin/tailwindcss ] || [ package.json -nt node_modules/.stamp ]; then \
	  npm install --no-audit --no-fund --loglevel=error && touch node_modules/.stamp; fi

## sandbox: what the local runtime contains tenants' code with (bubblewrap; slirp4netns for
## their outbound traffic) — installed with apt when missing and root.
sandbox:
	@for tool in bwrap:bubblewrap slirp4netns:slirp4netns; do \
	  command -v $${tool%%:*} >/dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $${tool##*:} (the sandbox of deployed services)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $${tool##*:}) >/dev/null; \
	  else echo "warning: $${tool##*:} is missing: deployments will be refused until it is installed (see README, Sandbox)"; fi; \
	done

## server: the axum binary (debug profile: fastest to build; `make release` for production)
server:
	cargo build -p server --bin roundhouse

## site: the hydration bundle (wasm + js), the stylesheet and public assets in $(SITE).
## wasm-bindgen/wasm-opt (~45 s) and Tailwind rerun only when their inputs changed.
WASM_IN := $(TARGET)/wasm32-unknown-unknown/wasm-release/frontend.wasm
APP_SOURCES := $(shell find app/src frontend/src -name '*.rs' 2>/dev/null)

site: wasm $(PKG)/roundhouse.wasm $(PKG)/roundhouse.css
	@cp -r public/. $(SITE)/
	@node scripts/precompress.mjs $(PKG)/roundhouse.wasm $(PKG)/roundhouse.js $(PKG)/roundhouse.css

wasm:
	cargo build -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release

$(PKG)/roundhouse.wasm: $(WASM_IN)
	@mkdir -p $(PKG)
	wasm-bindgen --target web --no-typescript --out-name roundhouse --out-dir $(PKG) $(WASM_IN)
	node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
	  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
	  $(PKG)/roundhouse_bg.wasm -o $(PKG)/roundhouse.wasm
	@rm -f $(PKG)/roundhouse_bg.wasm

$(PKG)/roundhouse.css: style/tailwind.css $(APP_SOURCES)
	@mkdir -p $(PKG)
	node_modules/.bin/tailwindcss -i style/tailwind.css -o $(PKG)/roundhouse.css --minify 2>/dev/null

build: tools sandbox server site

## db: start (or create) the project-local PostgreSQL unless DATABASE_URL is set
db:
	@./scripts/local-pg.sh roundhouse >/dev/null

run: build
	@DATABASE_URL="$$(./scripts/local-pg.sh roundhouse)" ROUNDHOUSE_ADDR=$(ROUNDHOUSE_ADDR) $(BIN)

## test: unit + integration (real PostgreSQL, one database per test) + browser journeys
test: build chromium
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-e2e

test-unit:
	DATABASE_URL="$$(./scripts/local-pg.sh roundhouse_tests)" cargo test --workspace --exclude frontend -- --test-threads=8 2>&1 | tee $(TARGET)/cargo-test.log | grep -vE '^test .* \.\.\. ok$$'

test-e2e:
	DATABASE_URL_BASE="$$(./scripts/local-pg.sh postgres | sed 's#/postgres$$##')" BIN=$(BIN) node --test --test-concurrency=1 end2end/

chromium:
	@[ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

## release: an optimised server binary
release: tools site
	cargo build -p server --bin roundhouse --release

## bench: request throughput and latency of key pages (see docs/benchmarks.md)
bench: tools release
	./scripts/bench.sh
	DATABASE_URL_BASE="$$(./scripts/local-pg.sh postgres | sed 's#/postgres$$##')" BIN=$(TARGET)/release/roundhouse node scripts/bench-deploy.mjs
	DATABASE_URL_BASE="$$(./scripts/local-pg.sh postgres | sed 's#/postgres$$##')" BIN=$(TARGET)/release/roundhouse node scripts/bench-logs.mjs

clean-data:
	@# Deployed services outlive the platform process: take them down with their data.
	@if [ -x $(BIN) ] && [ -d .data ]; then $(BIN) runtime destroy .data; fi
	./scripts/local-pg.sh >/dev/null 2>&1 || true
	rm -rf .data
