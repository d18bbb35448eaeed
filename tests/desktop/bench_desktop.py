"""Figures for the desktop app (not a test): resident memory with the inspector closed, after opening and
closing it three times, and CPU over 60 s idle and while the tray spins. Run by `make bench` as:

    xvfb-run -a dbus-run-session -- python3 tests/desktop/bench_desktop.py

MEMTRAY_DESKTOP_BIN names the binary (a release build). Memory and CPU count the app and every process it
started (WebKit's web and network processes while the inspector is open).
"""

import asyncio
import os
import time

import fake_desktop
from test_desktop import App, close_window, observation, until, x_windows

TICK = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = int(os.environ.get("MEMTRAY_BENCH_IDLE_SECS", "60"))


def tree(pid):
    """The process and its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def rss_mib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_ticks(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total


async def main():
    bus = await fake_desktop.connect()
    watcher = await fake_desktop.Watcher(bus).start()
    await fake_desktop.Notifications().start(bus)
    app = App(env={"MEMTRAY_FAULT_PROVIDER_DELAY_MS": "200", "MEMTRAY_LOG": "warn"})
    try:
        await until("the tray", lambda: watcher.items, timeout=30)
        await until("the core", app.up, timeout=30)
        tray = fake_desktop.Tray(bus, *watcher.items[-1])
        pid = app.proc.pid
        await asyncio.sleep(5)
        closed = rss_mib(pid)
        print(f"RSS, window never opened: {closed:.1f} MiB ({len(tree(pid))} processes)")

        for n in range(3):
            await tray.click("Open Inspector")
            await until("the window", lambda: "memtray" in x_windows(), timeout=30)
            await asyncio.sleep(3)
            if n == 0:
                print(f"RSS, inspector open: {rss_mib(pid):.1f} MiB ({len(tree(pid))} processes)")
            close_window("memtray")
            await until("the window to close", lambda: "memtray" not in x_windows(), timeout=30)
            await asyncio.sleep(3)
        after = rss_mib(pid)
        print(f"RSS, after opening and closing the inspector 3 times: {after:.1f} MiB "
              f"({(after - closed) / closed * 100:+.1f} %, {len(tree(pid))} processes)")

        start = cpu_ticks(pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle = cpu_ticks(pid) - start
        print(f"CPU, {IDLE_SECONDS} s idle: {idle} ticks of 1/{TICK} s "
              f"({idle / TICK / IDLE_SECONDS * 100:.2f} % of one core)")

        app.post("/api/sessions/init", {"claudeSessionId": "bench", "project": "bench", "prompt": "go"})
        for n in range(60):
            app.post("/api/sessions/observations", observation("bench", f"t{n}"))
        await until("processing", lambda: app.get("/api/processing-status")["isProcessing"])
        start, began, icons = cpu_ticks(pid), time.monotonic(), set()
        while time.monotonic() - began < 10:
            icons.add(await tray.icon())
            await asyncio.sleep(0.2)
        spinning = cpu_ticks(pid) - start
        print(f"CPU, 10 s spinning (provider sleeping 200 ms per message): {spinning} ticks "
              f"({spinning / TICK / 10 * 100:.2f} % of one core; {len(icons)} distinct icons sampled)")
    finally:
        app.stop()
        bus.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
