# memtray — the two commands a fresh machine needs are `make run` and `make test`.
# Both install what a fresh Debian/Ubuntu machine lacks first (`make deps`).

CARGO ?= cargo
# Debian/Ubuntu packages the build needs (rusqlite bundles SQLite and compiles it with cc).
APT_PACKAGES := build-essential pkg-config
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps run test bench lint fmt

all: test

deps:
	@command -v $(CARGO) >/dev/null || { echo "memtray needs a Rust toolchain (1.89 or newer): https://rustup.rs"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get -o DPkg::Lock::Timeout=900 update -q && \
		{ $(SUDO) apt-get -o DPkg::Lock::Timeout=900 install -y -q $$missing || \
		  $(SUDO) apt-get -o DPkg::Lock::Timeout=900 install -y -q $$missing; }; \
	fi

# The headless server on 127.0.0.1:37777 (MEMTRAY_PORT overrides) until Ctrl-C.
run: deps
	$(CARGO) run --release --bin memtray -- serve

# The whole suite: unit tests, the HTTP API and the Claude Code integration against the real binary,
# session-manager semantics, the SIGKILL crash test.
test: deps
	$(CARGO) test --workspace --lib --bins --tests

# Figures for speed and memory (not timed tests).
bench: deps
	$(CARGO) bench --bench core
	$(CARGO) bench --bench hook

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
