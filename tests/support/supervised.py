"""Two toy services under `predict_pipeline.cli.dev.supervise`, for its tests.

`python -m tests.support.supervised DIR` runs them until a signal or a death, printing what the
supervisor prints. The stubborn service leaves behind an orphan in its own session that
ignores SIGINT and SIGTERM (its parent exits at once) and writes its pid to DIR/orphan.pid;
the fragile service exits with code 3 once DIR/die exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

from predict_pipeline.cli.dev import Service, supervise

ORPHAN = """
import os, signal, sys, time
if os.fork():
    os._exit(0)  # the intermediate parent goes: the orphan is re-parented
os.setsid()
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as pid_file:
    pid_file.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])  # whole or absent, for whoever waits on it
time.sleep(600)
"""
STUBBORN = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", {ORPHAN!r}, sys.argv[1]], check=True)
time.sleep(600)
"""
FRAGILE = """
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
sys.exit(3)
"""


def main(state: Path) -> int:
    services = [
        Service(
            "the stubborn service",
            [sys.executable, "-c", STUBBORN, str(state / "orphan.pid")],
            state / "stubborn.log",
        ),
        Service(
            "the fragile service",
            [sys.executable, "-c", FRAGILE, str(state / "die")],
            state / "fragile.log",
        ),
    ]
    return supervise(
        services,
        starting_line="starting the toy services",
        is_ready=(state / "orphan.pid").exists,
        ready_line="toy services ready",
    )


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
