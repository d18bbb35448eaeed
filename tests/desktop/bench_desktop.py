"""Figures for the desktop app (not a test): resident memory idle, with the inspector open, and after opening
and closing it three times (the target: back within 10 % of idle), then CPU over 60 s idle and while the tray
spins. Run by `make bench` as:

    xvfb-run -a dbus-run-session -- python3 tests/desktop/bench_desktop.py

MEMTRAY_DESKTOP_BIN names the binary (a release build); MEMTRAY_BENCH_IDLE_SECS shortens the CPU idle phase (60 s).
Memory and CPU count the app and every process it started: the inspector process and WebKit's web and network
processes while the inspector is open.
"""

import asyncio
import os
import time

import fake_desktop
from test_desktop import App, close_window, inspector_processes, observation, process_tree, until, x_windows

TICK = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = int(os.environ.get("MEMTRAY_BENCH_IDLE_SECS", "60"))


def memory_mib(pid, field):
    """A memory figure of /proc/PID/smaps_rollup ("Rss", or "Pss", which shares each shared page out among the
    processes that map it) summed over the process and its descendants, in MiB."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def rss_mib(pid):
    return memory_mib(pid, "Rss")


def pss_mib(pid):
    return memory_mib(pid, "Pss")


def cpu_ticks(pid):
    total = 0
    for p in process_tree(pid):
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
        idle = rss_mib(pid)
        print(f"RSS, idle (inspector never opened): {idle:.1f} MiB (PSS {pss_mib(pid):.1f} MiB; "
              f"{len(process_tree(pid))} processes)")

        for n in range(3):
            await tray.click("Open Inspector")
            await until("the window", lambda: "memtray" in x_windows(), timeout=30)
            await asyncio.sleep(3)
            if n == 0:
                (inspector,) = inspector_processes(app)
                print(f"RSS, inspector open: {rss_mib(pid):.1f} MiB (PSS {pss_mib(pid):.1f} MiB; "
                      f"{len(process_tree(pid))} processes; "
                      f"the inspector process and its WebKit processes {rss_mib(inspector):.1f} MiB, "
                      f"the tray app alone {rss_mib(pid) - rss_mib(inspector):.1f} MiB)")
            close_window("memtray")
            await until("the window to close", lambda: "memtray" not in x_windows(), timeout=30)
            await until("the inspector's processes to end", lambda: process_tree(pid) == [pid], timeout=30)
        await asyncio.sleep(3)
        after = rss_mib(pid)
        change = (after - idle) / idle * 100
        verdict = "within" if abs(change) <= 10 else "NOT within"
        print(f"RSS, after opening and closing the inspector 3 times: {after:.1f} MiB "
              f"({change:+.1f} % of idle, {verdict} the 10 % target; PSS {pss_mib(pid):.1f} MiB; "
              f"{len(process_tree(pid))} processes)")

        start = cpu_ticks(pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle_ticks = cpu_ticks(pid) - start
        print(f"CPU, {IDLE_SECONDS} s idle: {idle_ticks} ticks of 1/{TICK} s "
              f"({idle_ticks / TICK / IDLE_SECONDS * 100:.2f} % of one core)")

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
