# memtray — the two commands a fresh machine needs are `make run` and `make test`.
# Both install what a fresh Debian/Ubuntu machine lacks first (`make deps`).

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Debian/Ubuntu packages: the build (rusqlite bundles SQLite; Tauri needs WebKitGTK and the app indicator),
# the desktop tests (Xvfb, a session bus, dbus-next for the fake tray host and notification daemon, X tools
# for window checks and screenshots), the inspector's browser tests (Chromium and its WebDriver) and the team
# memory tests and bench (PostgreSQL: they start throwaway clusters of their own, never the system one).
APT_PACKAGES := build-essential pkg-config libssl-dev \
	libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev \
	xvfb xauth dbus dbus-x11 at-spi2-core x11-utils imagemagick python3 python3-dbus-next python3-xlib \
	chromium chromium-driver postgresql
# The desktop tests run the built binaries on a virtual display with a private session bus.
DESKTOP_TESTS := MEMTRAY_DESKTOP_BIN=$(TARGET_DIR)/debug/memtray-desktop MEMTRAY_BIN=$(TARGET_DIR)/debug/memtray \
	xvfb-run -a dbus-run-session -- /usr/bin/python3 -m unittest discover -s tests/desktop -t tests/desktop
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps run test bench lint fmt

all: test

deps:
	@command -v $(CARGO) >/dev/null || { echo "memtray needs a Rust toolchain (1.89 or newer): https://rustup.rs"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get -o DPkg::Lock::Timeout=900 update -q && \
		{ for try in 1 2 3; do \
		    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q $$missing && break; \
		    [ $$try = 3 ] && exit 1; echo "apt-get failed; trying again"; sleep 2; \
		  done; }; \
	fi

# The real Claude Code CLI the end-to-end tests drive, pinned in tests/claude-cli/package.json (npm ci keeps
# to its lock file). Node.js and npm come from Debian when the machine has none.
CLAUDE_CLI_DIR := tests/claude-cli
CLAUDE_CLI := $(CLAUDE_CLI_DIR)/node_modules/.bin/claude
test-deps: deps
	@command -v npm >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q nodejs npm
	@want=$$(sed -n 's/.*"@anthropic-ai\/claude-code": "\(.*\)".*/\1/p' $(CLAUDE_CLI_DIR)/package.json); \
	have=$$($(CLAUDE_CLI) --version 2>/dev/null | cut -d' ' -f1); \
	if [ "$$have" != "$$want" ]; then \
		echo "installing Claude Code $$want for the tests"; \
		cd $(CLAUDE_CLI_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

# The tray app when there is a display; the headless server on 127.0.0.1:37777 (MEMTRAY_PORT overrides)
# otherwise, until Ctrl-C.
run: deps
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		$(CARGO) run --release -p memtray-desktop; \
	else \
		echo "no display: running the headless server (inspector at http://127.0.0.1:$${MEMTRAY_PORT:-37777}/)"; \
		$(CARGO) run --release --bin memtray -- serve; \
	fi

# The whole suite: unit tests, the HTTP API and the Claude Code integration against the real binary (and the
# real Claude Code CLI),
# the core's queue semantics on a paused clock, the SIGKILL crash test, search and the MCP server, team memory against
# throwaway PostgreSQL clusters, the inspector in a real browser, then the desktop app
# on a virtual display.
test: test-deps
	$(CARGO) test --workspace --lib --bins --tests
	$(CARGO) build -p memtray -p memtray-desktop --bins
	$(DESKTOP_TESTS) -v

# Figures for speed and memory (not timed tests).
bench: test-deps
	$(CARGO) bench --bench core
	$(CARGO) bench --bench hook
	$(CARGO) bench --bench claude_cli
	$(CARGO) bench --bench inspector
	$(CARGO) bench --bench search
	$(CARGO) bench --bench guards
	$(CARGO) bench --bench providers
	$(CARGO) bench --bench team
	$(CARGO) build --release -p memtray-desktop
	MEMTRAY_DESKTOP_BIN=$(TARGET_DIR)/release/memtray-desktop \
		xvfb-run -a dbus-run-session -- /usr/bin/python3 tests/desktop/bench_desktop.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
