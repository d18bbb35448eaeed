"""The desktop app (`memtray-desktop`) on a real X display (Xvfb) and a real D-Bus session bus, with a fake
tray host and notification daemon from `fake_desktop`. Run by `make test` as:

    xvfb-run -a dbus-run-session -- python3 -m unittest discover -s tests/desktop

MEMTRAY_DESKTOP_BIN and MEMTRAY_BIN name the built binaries. Every app instance gets its own HOME,
XDG_RUNTIME_DIR, data dir and loopback port. Screenshots go to tests/artifacts/desktop/.
"""

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest
import urllib.request

import fake_desktop

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts", "desktop")
DESKTOP_BIN = os.environ.get("MEMTRAY_DESKTOP_BIN", os.path.join(ROOT, "target", "debug", "memtray-desktop"))
SERVER_BIN = os.environ.get("MEMTRAY_BIN", os.path.join(ROOT, "target", "debug", "memtray"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(what, check, timeout=15.0, every=0.05):
    """Polls an async or plain check until it returns something truthy; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
        except (OSError, RuntimeError, KeyError) as e:
            last = e
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def x_windows():
    """Names of the mapped top-level windows on the X display."""
    out = subprocess.run(["xwininfo", "-root", "-children"], capture_output=True, text=True, check=True).stdout
    names = []
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("0x") or '"' not in line:
            continue
        wid, name = line.split()[0], line.split('"')[1]
        info = subprocess.run(["xwininfo", "-id", wid], capture_output=True, text=True).stdout
        if "IsViewable" in info:
            names.append(name)
    return names


def process_tree(pid):
    """The process and its descendants, as pids."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def inspector_processes(app):
    """Pids of inspector processes (`memtray-desktop --inspector URL`) pointed at this app's port, anywhere.

    WebKit starts its helpers by fork and exec; between the two a helper still shows the inspector's command
    line, so a match whose parent is itself a match is a helper being started, not a second inspector."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if len(args) > 2 and args[1] == b"--inspector" and args[2].decode(errors="replace").startswith(app.base):
                found[int(entry)] = parent
    return sorted(pid for pid, parent in found.items() if parent not in found)


def close_window(name):
    """What a window manager does when the user clicks a window's close button: WM_DELETE_WINDOW."""
    from Xlib import X, display, protocol

    d = display.Display()
    try:
        root = d.screen().root
        delete, protocols = d.intern_atom("WM_DELETE_WINDOW"), d.intern_atom("WM_PROTOCOLS")
        closed = 0
        for window in root.query_tree().children:
            if window.get_wm_name() == name and window.get_attributes().map_state == X.IsViewable:
                event = protocol.event.ClientMessage(window=window, client_type=protocols,
                                                     data=(32, [delete, X.CurrentTime, 0, 0, 0]))
                window.send_event(event)
                closed += 1
        d.flush()
        return closed
    finally:
        d.close()


def screenshot(name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    subprocess.run(["import", "-window", "root", path], check=True)
    return path


def colours(path):
    """How many distinct colours a PNG holds: a blank screen has one."""
    out = subprocess.run(["identify", "-format", "%k", path], capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def serve_elsewhere():
    """A `memtray serve` on a free port with its own folders (so its own secret): (port, root, process)."""
    port = free_port()
    root = tempfile.mkdtemp(prefix="memtray-serve-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTRAY_")}
    env.update({"MEMTRAY_PORT": str(port), "MEMTRAY_DATA_DIR": root, "MEMTRAY_CONFIG": root + "/c.toml",
                "MEMTRAY_STATE_DIR": root + "/state", "MEMTRAY_LOG": "warn"})
    return port, root, subprocess.Popen([SERVER_BIN, "serve"], env=env, stdout=subprocess.PIPE)


class FakeMessagesApi:
    """A fake Anthropic Messages API on a free loopback port: 401 `authentication_error` for a wrong
    `x-api-key`, else one observation per request, with usage, as the real API answers without streaming."""

    def __init__(self, key):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("x-api-key") != key:
                    code, body = 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
                else:
                    code, body = 200, {
                        "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "<observation><type>discovery</type><title>Seen by the fake model</title></observation>"}],
                        "stop_reason": "end_turn", "usage": {"input_tokens": 120, "output_tokens": 30},
                    }
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class App:
    """One `memtray-desktop` process with its own home, runtime dir, data dir and port."""

    def __init__(self, port=None, env=None, args=("--autostart",), binary=DESKTOP_BIN, root=None):
        self.root = root or tempfile.mkdtemp(prefix="memtray-desktop-")
        self.port = port or free_port()
        self.env = dict(os.environ)
        for key in [k for k in self.env if k.startswith("MEMTRAY_")]:
            del self.env[key]
        runtime = os.path.join(self.root, "run")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        self.env.update({
            "HOME": os.path.join(self.root, "home"),
            "XDG_RUNTIME_DIR": runtime,
            "XDG_CONFIG_HOME": os.path.join(self.root, "home", ".config"),
            "MEMTRAY_DATA_DIR": os.path.join(self.root, "data"),
            "MEMTRAY_CONFIG": os.path.join(self.root, "config.toml"),
            "MEMTRAY_STATE_DIR": os.path.join(self.root, "state"),
            "MEMTRAY_PORT": str(self.port),
            "MEMTRAY_LOG": "info",
        })
        self.env.update(env or {})
        os.makedirs(self.env["HOME"], exist_ok=True)
        self.binary = binary
        self.log = open(os.path.join(self.root, "desktop.log"), "ab")
        self.proc = subprocess.Popen([binary, *args], env=self.env, stdout=self.log, stderr=self.log)

    def launch_again(self, *args):
        """A second launch of the same app, as a user double-clicking it again."""
        return subprocess.run([self.binary, *args], env=self.env, stdout=self.log, stderr=self.log, timeout=30)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def secret(self):
        """This user's secret, which the app made in its state folder; reads and admin need it."""
        try:
            with open(os.path.join(self.env["MEMTRAY_STATE_DIR"], "token")) as f:
                return f.read().strip()
        except OSError:
            return ""

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "X-Memtray-Token": self.secret()})
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.loads(answer.read() or b"null")

    def post(self, path, body):
        return self.request("POST", path, body)

    def get(self, path):
        return self.request("GET", path)

    def up(self):
        try:
            return self.get("/api/health")["status"] == "ok"
        except OSError:
            return False

    def database_count(self, sql):
        db = sqlite3.connect(os.path.join(self.env["MEMTRAY_DATA_DIR"], "memtray.db"))
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()

    def log_text(self):
        self.log.flush()
        with open(os.path.join(self.root, "desktop.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def observation(session, tool_use_id, tool="Bash", cwd="/home/dev/projects/ledger"):
    return {
        "claudeSessionId": session,
        "tool_name": tool,
        "tool_input": {"command": f"cargo test {tool_use_id}"},
        "tool_response": {"stdout": f"ok {tool_use_id}", "stderr": ""},
        "cwd": cwd,
        "tool_use_id": tool_use_id,
    }


def summarized_session(app, session, project):
    app.post("/api/sessions/init", {"claudeSessionId": session, "project": project, "prompt": "Fix the totals"})
    app.post("/api/sessions/observations", observation(session, f"{session}-t1"))
    app.post("/api/sessions/summarize", {"claudeSessionId": session, "last_assistant_message": "Totals add up now."})


class DesktopTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.bus = await fake_desktop.connect()
        self.watcher = await fake_desktop.Watcher(self.bus).start()
        self.notifications = await fake_desktop.Notifications().start(self.bus)
        self.apps = []

    async def asyncTearDown(self):
        for app in self.apps:
            app.stop()
        self.bus.disconnect()
        await self.bus.wait_for_disconnect()

    def start(self, **kwargs):
        app = App(**kwargs)
        self.apps.append(app)
        return app

    async def tray_of(self, app):
        await until("the tray to register", lambda: self.watcher.items, timeout=30)
        await until("the core to serve", app.up, timeout=30)
        name, path = self.watcher.items[-1]
        return fake_desktop.Tray(self.bus, name, path)

    async def test_tray_registers_with_its_menu(self):
        app = self.start()
        tray = await self.tray_of(app)
        await until("the status line to say Idle", lambda: self._label(tray, 0, "Idle"))
        menu = [(i["label"], i["enabled"], i["checked"]) for i in await tray.menu() if i["type"] != "separator"]
        self.assertEqual(menu, [
            ("Idle", False, None),
            ("Open Inspector", True, None),
            ("Retry stuck (0)", False, None),
            ("Pause processing", True, False),
            ("Start at login", True, False),
            ("Notifications", True, True),
            ("Open data folder", True, None),
            ("Quit", True, None),
        ])
        self.assertTrue((await tray.icon()).endswith(".png"))

    async def _label(self, tray, index, prefix):
        items = [i for i in await tray.menu() if i["type"] != "separator"]
        return items[index]["label"].startswith(prefix) and items[index]["label"]

    async def test_icon_spins_while_processing_and_rests_after_the_queue_drains(self):
        app = self.start(env={"MEMTRAY_FAULT_PROVIDER_DELAY_MS": "150"})
        tray = await self.tray_of(app)
        idle = await tray.icon()
        with open(idle, "rb") as f:
            idle_png = f.read()
        app.post("/api/sessions/init", {"claudeSessionId": "spin", "project": "ledger", "prompt": "go"})
        for n in range(16):
            app.post("/api/sessions/observations", observation("spin", f"t{n}"))
        await until("processing to start", lambda: app.get("/api/processing-status")["isProcessing"])
        seen, busy_label = set(), None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen.add(await tray.icon())
            if busy_label is None:
                label = (await tray.menu())[0]["label"]
                busy_label = label if label.startswith("Processing") else None
            if not app.get("/api/processing-status")["isProcessing"]:
                break
            await asyncio.sleep(0.04)
        else:
            self.fail("the queue never drained")
        self.assertGreaterEqual(len(seen), 8, "the icon should change many times while processing")
        self.assertRegex(busy_label or "", r"^Processing \d+ messages? in 1 session")
        # Within a second of draining the icon is the idle picture again, and then it stays put.
        await asyncio.sleep(1.0)
        rest = await tray.icon()
        with open(rest, "rb") as f:
            self.assertEqual(f.read(), idle_png, "the icon should be back to idle")
        for _ in range(15):
            await asyncio.sleep(0.1)
            self.assertEqual(await tray.icon(), rest, "the icon must stop changing when idle")
        self.assertEqual((await tray.menu())[0]["label"], "Idle")

    async def test_summaries_notify_naming_the_project_and_bursts_coalesce(self):
        app = self.start()
        await self.tray_of(app)
        summarized_session(app, "s1", "ledger")
        await until("a notification", lambda: self.notifications.shown)
        first = self.notifications.shown[0]
        self.assertEqual(first["title"], "Summary ready — ledger")
        self.assertIn("Fix the totals", first["body"])
        self.assertIn("default", first["actions"])
        self.assertEqual(first["app"], "memtray")
        self.assertEqual(first["hints"].get("desktop-entry"), "memtray")
        # Three summaries at once: one notification that counts them.
        for n, project in enumerate(["ledger", "api", "web"]):
            summarized_session(app, f"b{n}", project)
        await until("the burst notification", lambda: len(self.notifications.shown) >= 2)
        await asyncio.sleep(3)  # longer than the quiet spell: nothing else may arrive
        self.assertEqual(len(self.notifications.shown), 2, self.notifications.shown)
        self.assertEqual(self.notifications.shown[1]["title"], "3 summaries ready")
        self.assertEqual(self.notifications.shown[1]["body"], "ledger, api, web")
        # Clicking the first one opens the inspector (at its session).
        self.assertNotIn("memtray", x_windows())
        self.notifications.click(first["id"])
        await until("the inspector window", lambda: "memtray" in x_windows(), timeout=30)

    async def test_failures_notify_once_per_session_and_the_checkbox_silences(self):
        app = self.start(env={"MEMTRAY_FAULT_FAIL_TOOLS": "Bash", "MEMTRAY_MAX_ATTEMPTS": "1"})
        tray = await self.tray_of(app)
        app.post("/api/sessions/init", {"claudeSessionId": "f1", "project": "ledger", "prompt": "go"})
        app.post("/api/sessions/observations", observation("f1", "t1"))
        app.post("/api/sessions/observations", observation("f1", "t2"))
        await until("a failure notification", lambda: self.notifications.shown)
        await asyncio.sleep(3)
        self.assertEqual([n["title"] for n in self.notifications.shown], ["2 messages failed in ledger"])
        # The same session failing again is not news until a retry.
        app.post("/api/sessions/observations", observation("f1", "t3"))
        await until("the attention state", lambda: self._label(tray, 0, "Idle, 3 failed"))
        await asyncio.sleep(3)
        self.assertEqual(len(self.notifications.shown), 1)
        # Notifications off: a summary shows nothing.
        await tray.click("Notifications")
        await until("the checkbox to clear", lambda: self._checked(tray, "Notifications", False))
        summarized_session(app, "quiet", "ledger")
        await until("the summary", lambda: app.get("/api/summaries")["total"] >= 1)
        await asyncio.sleep(3)
        self.assertEqual(len(self.notifications.shown), 1)
        with open(os.path.join(app.env["MEMTRAY_STATE_DIR"], "desktop.json")) as f:
            self.assertEqual(json.load(f), {"notifications": False})

    async def test_a_stop_is_not_a_retry_so_a_failed_session_is_told_once(self):
        app = self.start(env={"MEMTRAY_FAULT_FAIL_TOOLS": "Bash", "MEMTRAY_MAX_ATTEMPTS": "1"})
        tray = await self.tray_of(app)
        app.post("/api/sessions/init", {"claudeSessionId": "f1", "project": "ledger", "prompt": "go"})
        app.post("/api/sessions/observations", observation("f1", "t1"))
        await until("a failure notification", lambda: self.notifications.shown)
        # The agent stops: its summary is news, but the session's failures were told already.
        app.post("/api/sessions/summarize", {"claudeSessionId": "f1", "last_assistant_message": "Gave up."})
        await until("the summary notification", lambda: len(self.notifications.shown) >= 2)
        app.post("/api/sessions/observations", observation("f1", "t2"))
        await until("the second failure", lambda: self._label(tray, 0, "Idle, 2 failed"))
        await asyncio.sleep(3)  # longer than a burst: nothing else may arrive
        titles = [n["title"] for n in self.notifications.shown]
        self.assertEqual(titles, ["1 message failed in ledger", "Summary ready — ledger"])
        # Retry stuck from the tray is a retry: the next failure is news again.
        await tray.click("Retry stuck (2)")
        await until("the third notification", lambda: len(self.notifications.shown) >= 3)
        self.assertEqual(self.notifications.shown[2]["title"], "2 messages failed in ledger")

    async def test_without_a_notification_service_the_app_logs_once_and_runs_on(self):
        await self.bus.release_name("org.freedesktop.Notifications")
        app = self.start()
        await self.tray_of(app)
        summarized_session(app, "n1", "ledger")
        await until("the first summary", lambda: app.get("/api/summaries")["total"] >= 1)
        await until("the log line", lambda: "no desktop notification service" in app.log_text())
        summarized_session(app, "n2", "api")
        await until("the second summary", lambda: app.get("/api/summaries")["total"] >= 2)
        await asyncio.sleep(7)  # past the longest burst
        self.assertEqual(app.log_text().count("no desktop notification service"), 1, app.log_text())
        self.assertEqual(self.notifications.shown, [])
        self.assertIsNone(app.proc.poll())

    async def _checked(self, tray, label, want):
        return (await tray.item(label))["checked"] is want

    async def test_open_inspector_from_the_menu_shows_a_window(self):
        app = self.start()
        tray = await self.tray_of(app)
        summarized_session(app, "seen", "ledger")
        self.assertNotIn("memtray", x_windows())
        await tray.click("Open Inspector")
        await until("the inspector window", lambda: "memtray" in x_windows(), timeout=30)
        await asyncio.sleep(4)  # let the page load and paint before the picture
        shot = screenshot("inspector-window.png")
        self.assertGreater(colours(shot), 16, "the screenshot should show a rendered page, not a blank screen")
        # Closing the window destroys it and leaves the app running; the menu opens a new one.
        self.assertEqual(close_window("memtray"), 1)
        await until("the window to go", lambda: "memtray" not in x_windows())
        await asyncio.sleep(1)
        self.assertIsNone(app.proc.poll(), "closing the inspector must not quit the app")
        await tray.click("Open Inspector")
        await until("a new inspector window", lambda: "memtray" in x_windows(), timeout=30)

    async def _open_inspector(self, app, tray):
        await tray.click("Open Inspector")
        await until("the inspector window", lambda: "memtray" in x_windows(), timeout=30)
        (pid,) = await until("the inspector process", lambda: inspector_processes(app))
        self.assertIn(pid, process_tree(app.proc.pid), "the inspector process is the tray app's child")
        self.assertNotEqual(pid, app.proc.pid)
        return pid

    async def test_closing_the_inspector_ends_its_process_and_everything_it_started(self):
        app = self.start()
        tray = await self.tray_of(app)
        alone = process_tree(app.proc.pid)
        first = await self._open_inspector(app, tray)
        self.assertGreater(len(process_tree(app.proc.pid)), len(alone))
        self.assertEqual(close_window("memtray"), 1)
        await until("the inspector process to exit", lambda: not inspector_processes(app))
        await until("WebKit's processes to go too", lambda: process_tree(app.proc.pid) == [app.proc.pid])
        self.assertIn("inspector process ended", app.log_text())
        self.assertNotIn("killing it", app.log_text(), "closing the window should end the process by itself")
        self.assertIsNone(app.proc.poll())
        second = await self._open_inspector(app, tray)
        self.assertNotEqual(first, second)

    async def test_opening_the_inspector_right_after_closing_it_shows_a_new_one(self):
        app = self.start()
        tray = await self.tray_of(app)
        first = await self._open_inspector(app, tray)
        # Open again as soon as the window is gone: the request may reach the closing process before the tray
        # hears it is closing, and must not be lost.
        self.assertEqual(close_window("memtray"), 1)
        await until("the window to go", lambda: "memtray" not in x_windows(), every=0.01)
        await tray.click("Open Inspector")
        await until("the closed inspector's process to exit", lambda: first not in inspector_processes(app))
        (second,) = await until("a new inspector process", lambda: inspector_processes(app), timeout=30)
        self.assertNotEqual(first, second)
        await until("its window", lambda: "memtray" in x_windows(), timeout=30)

    async def test_a_notification_click_takes_the_open_inspector_to_its_session(self):
        app = self.start()
        tray = await self.tray_of(app)
        pid = await self._open_inspector(app, tray)
        summarized_session(app, "nav", "ledger")
        note = (await until("a notification", lambda: self.notifications.shown))[0]
        session_id = app.get("/api/sessions?limit=1")["sessions"][0]["id"]
        self.notifications.click(note["id"])
        await until("the open window to go to the session",
                    lambda: f"/#/sessions/{session_id}" in app.log_text(), timeout=30)
        self.assertEqual(inspector_processes(app), [pid], "the open window is reused, not a second one started")
        self.assertEqual(x_windows().count("memtray"), 1)

    async def test_quit_leaves_no_inspector_process_behind(self):
        app = self.start()
        tray = await self.tray_of(app)
        await self._open_inspector(app, tray)
        await tray.click("Quit")
        self.assertEqual(await asyncio.to_thread(app.proc.wait, 30), 0)
        await until("no inspector process", lambda: not inspector_processes(app), timeout=5)
        await until("no inspector window", lambda: "memtray" not in x_windows(), timeout=5)

    async def test_sigterm_leaves_no_inspector_process_behind(self):
        app = self.start()
        tray = await self.tray_of(app)
        await self._open_inspector(app, tray)
        app.proc.terminate()
        self.assertEqual(await asyncio.to_thread(app.proc.wait, 30), 0)
        await until("no inspector process", lambda: not inspector_processes(app), timeout=5)
        await until("no inspector window", lambda: "memtray" not in x_windows(), timeout=5)

    async def test_a_killed_tray_app_takes_its_inspector_with_it(self):
        app = self.start()
        tray = await self.tray_of(app)
        await self._open_inspector(app, tray)
        app.proc.kill()
        await asyncio.to_thread(app.proc.wait, 10)
        # Its stdin closes with the tray app: it closes its window and exits.
        await until("no inspector process", lambda: not inspector_processes(app), timeout=10)
        await until("no inspector window", lambda: "memtray" not in x_windows(), timeout=10)

    async def test_start_at_login_writes_and_removes_the_autostart_entry(self):
        # From a folder with a space, so the Exec line needs quoting.
        folder = tempfile.mkdtemp(prefix="memtray apps ")
        binary = os.path.join(folder, "memtray-desktop")
        shutil.copy(DESKTOP_BIN, binary)
        app = self.start(binary=binary)
        tray = await self.tray_of(app)
        entry = os.path.join(app.env["HOME"], ".config", "autostart", "memtray.desktop")
        self.assertFalse(os.path.exists(entry))
        await tray.click("Start at login")
        await until("the autostart entry", lambda: os.path.exists(entry))
        await until("the checkbox to show it", lambda: self._checked(tray, "Start at login", True))
        with open(entry) as f:
            text = f.read()
        self.assertIn(f'Exec="{binary}" --autostart\n', text)
        self.assertIn("Type=Application", text)
        await tray.click("Start at login")
        await until("the entry to go", lambda: not os.path.exists(entry))
        await until("the checkbox to clear", lambda: self._checked(tray, "Start at login", False))
        shutil.rmtree(folder)

    async def test_quit_leaves_nothing_processing(self):
        app = self.start(env={"MEMTRAY_FAULT_PROVIDER_DELAY_MS": "400"})
        tray = await self.tray_of(app)
        app.post("/api/sessions/init", {"claudeSessionId": "q", "project": "ledger", "prompt": "go"})
        for n in range(10):
            app.post("/api/sessions/observations", observation("q", f"t{n}"))
        await until("a message in processing", lambda: app.get("/api/stats")["processing"] > 0)
        await tray.click("Quit")
        self.assertEqual(await asyncio.to_thread(app.proc.wait, 30), 0)
        self.assertFalse(app.up())
        self.assertEqual(app.database_count("SELECT count(*) FROM messages WHERE status = 'processing'"), 0)
        self.assertEqual(app.database_count("SELECT count(*) FROM messages"), 10)

    async def test_a_second_launch_exits_and_the_first_shows_the_inspector(self):
        app = self.start()
        await self.tray_of(app)
        self.assertNotIn("memtray", x_windows())
        second = await asyncio.to_thread(app.launch_again)
        self.assertEqual(second.returncode, 0)
        await until("the first instance's inspector", lambda: "memtray" in x_windows(), timeout=30)
        self.assertIsNone(app.proc.poll(), "the first instance must keep running")
        self.assertEqual(len(self.watcher.items), 1, "the second launch must not add a tray")

    async def test_attaches_to_a_running_memtray_server(self):
        port, root, server = serve_elsewhere()
        try:
            self.assertIn(b"ready", server.stdout.readline())
            # The same user's app: it shares the server's state folder, so it knows the secret the server
            # must prove it knows.
            app = self.start(port=port, env={"MEMTRAY_STATE_DIR": root + "/state"})
            tray = await self.tray_of(app)
            await until("the attached status", lambda: self._label(tray, 0, "Idle (memtray serve)"))
            summarized_session(app, "a1", "ledger")
            await until("a notification from the attached server", lambda: self.notifications.shown)
            self.assertEqual(self.notifications.shown[0]["title"], "Summary ready — ledger")
            self.assertIn("another memtray serves the port", app.log_text())
            # The server goes away: the tray says so, then takes over the port itself.
            server.terminate()
            server.wait(timeout=20)
            await until("the core to run in the app", lambda: app.up() and "runs in this process" in app.log_text(),
                        timeout=30)
            await until("the embedded status", lambda: self._label(tray, 0, "Idle"))
            self.assertNotIn("(memtray serve)", (await tray.menu())[0]["label"])
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()

    async def test_another_accounts_memtray_on_the_port_is_not_followed(self):
        port, root, server = serve_elsewhere()
        try:
            self.assertIn(b"ready", server.stdout.readline())
            # Its own state folder, so its own secret: the server cannot prove it knows this app's.
            app = self.start(port=port)
            await until("the tray to register", lambda: self.watcher.items, timeout=30)
            name, path = self.watcher.items[-1]
            tray = fake_desktop.Tray(self.bus, name, path)
            label = await until("the error status line", lambda: self._label(tray, 0, "Not running:"))
            self.assertIn("not this user's", label)
            self.assertIsNone(app.proc.poll(), "the app keeps running and keeps trying")
        finally:
            server.kill()
            server.wait()

    async def test_a_foreign_program_on_the_port_shows_the_error_state(self):
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(16)
        try:
            app = self.start(port=squatter.getsockname()[1])
            await until("the tray to register", lambda: self.watcher.items, timeout=30)
            name, path = self.watcher.items[-1]
            tray = fake_desktop.Tray(self.bus, name, path)
            label = await until("the error status line", lambda: self._label(tray, 0, "Not running:"))
            self.assertIn("in use by another program", label)
            with open(await tray.icon(), "rb") as f, open(os.path.join(ROOT, "icons", "tray-idle.png"), "rb") as g:
                self.assertNotEqual(f.read(), g.read())
            self.assertIsNone(app.proc.poll(), "the app keeps running and keeps trying")
        finally:
            squatter.close()

    async def test_a_provider_refusing_its_key_shows_the_error_state_with_the_reason(self):
        api = FakeMessagesApi("sk-right")
        try:
            app = self.start(env={"MEMTRAY_PROVIDER": "anthropic", "MEMTRAY_ANTHROPIC_BASE_URL": api.url,
                                  "MEMTRAY_ANTHROPIC_API_KEY": "sk-wrong", "MEMTRAY_PROVIDER_PROBE_SECS": "600"})
            tray = await self.tray_of(app)
            app.post("/api/sessions/init", {"claudeSessionId": "k1", "project": "ledger", "prompt": "go"})
            app.post("/api/sessions/observations", observation("k1", "k1-t1"))
            label = await until("the status line to name the refusal",
                                lambda: self._label(tray, 0, "Processing 1 message in 1 session; anthropic refuses"), timeout=30)
            self.assertIn("401 authentication_error: invalid x-api-key", label)
            with open(await tray.icon(), "rb") as f, open(os.path.join(ROOT, "icons", "tray-idle.png"), "rb") as g:
                self.assertNotEqual(f.read(), g.read(), "the error icon, not the idle one")
            self.assertEqual(app.database_count("SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"), 1)
        finally:
            api.close()

    async def test_the_daily_token_ceiling_is_notified_once_and_shown(self):
        api = FakeMessagesApi("sk-right")
        try:
            app = self.start(env={"MEMTRAY_PROVIDER": "anthropic", "MEMTRAY_ANTHROPIC_BASE_URL": api.url,
                                  "MEMTRAY_ANTHROPIC_API_KEY": "sk-right", "MEMTRAY_MAX_TOKENS_PER_DAY": "100"})
            tray = await self.tray_of(app)
            for n in range(3):
                app.post("/api/sessions/init", {"claudeSessionId": f"t{n}", "project": "ledger", "prompt": "go"})
                app.post("/api/sessions/observations", observation(f"t{n}", f"t{n}-t1"))
                # One at a time: the first call spends past the ceiling before the next is asked.
                await until("the observation", lambda: app.database_count("SELECT count(*) FROM observations") == n + 1, timeout=30)
            await until("the ceiling notification",
                        lambda: [n for n in self.notifications.shown if n["title"] == "Daily token ceiling reached"], timeout=30)
            await until("the status line to say so", lambda: self._label(tray, 0, "Idle; token ceiling reached (100)"), timeout=30)
            await asyncio.sleep(3)  # longer than a notification burst: a second one would have come by now
            ceilings = [n for n in self.notifications.shown if n["title"] == "Daily token ceiling reached"]
            self.assertEqual(len(ceilings), 1, self.notifications.shown)
            self.assertIn("anthropic", ceilings[0]["body"])
            self.assertEqual(app.database_count("SELECT count(*) FROM observations WHERE fallback LIKE '%daily token ceiling%'"), 2)
        finally:
            api.close()


if __name__ == "__main__":
    unittest.main()
