#!/usr/bin/env python3
"""A fake `claude -p --output-format json` for memtray's claude-cli provider tests.

Called as: fake_claude.py MODE LOGDIR [claude's own arguments...]. Records every run (pid, process group,
arguments, environment, working folder, stdin, start and end times) in LOGDIR, then behaves as MODE says:
answer, slow (answers after 0.3 s), hang, grandchild-hang (starts a `sleep` child, then hangs),
grandchild-answer (starts a `sleep` child, answers and exits, leaving it), logged-out (an error result).
"""

import json
import os
import subprocess
import sys
import time

mode, logdir, args = sys.argv[1], sys.argv[2], sys.argv[3:]
pid = os.getpid()


def log(line):
    with open(os.path.join(logdir, "runs.log"), "a") as f:
        f.write(f"{line}\n")


log(f"start {pid} {time.monotonic_ns()}")
stdin = sys.stdin.read()
with open(os.path.join(logdir, f"run-{pid}.json"), "w") as f:
    json.dump({"pid": pid, "pgid": os.getpgid(0), "args": args, "env": dict(os.environ), "cwd": os.getcwd(), "stdin": stdin}, f)

if mode.startswith("grandchild"):
    child = subprocess.Popen(["sleep", "3600"])
    with open(os.path.join(logdir, f"grandchild-{pid}"), "w") as f:
        f.write(str(child.pid))

if mode in ("hang", "grandchild-hang"):
    while True:
        time.sleep(3600)

if mode == "slow":
    time.sleep(0.3)

if mode == "logged-out":
    print(json.dumps({"type": "result", "subtype": "success", "is_error": True, "result": "Invalid API key · Please run /login"}))
    log(f"end {pid} {time.monotonic_ns()}")
    sys.exit(1)

if "Write the summary." in stdin:
    result = "<summary><request>Fix the parser</request><investigated>parse.rs</investigated><learned>Tokens were read twice</learned><completed>Read them once</completed><next_steps></next_steps><notes></notes></summary>"
else:
    count = stdin.count("<tool_use number=")
    result = "".join(
        f"<observation><about>{n}</about><type>change</type><title>CLI saw #{n}</title><narrative>Seen through claude -p.</narrative></observation>"
        for n in range(1, count + 1)
    )
print(json.dumps({
    "type": "result", "subtype": "success", "is_error": False, "duration_ms": 10, "num_turns": 1, "result": result,
    "session_id": "00000000-0000-0000-0000-000000000000", "total_cost_usd": 0.001,
    "usage": {"input_tokens": len(stdin) // 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 7, "output_tokens": len(result) // 4},
    "modelUsage": {"claude-haiku-4-5": {"inputTokens": len(stdin) // 4, "outputTokens": len(result) // 4}},
}))
log(f"end {pid} {time.monotonic_ns()}")
