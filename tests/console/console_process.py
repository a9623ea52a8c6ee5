"""``t10k kms serve`` as a process for the tests: started on a free port, stopped by its PID."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ConsoleProcess:
    def __init__(self, store: Path, *, mqtt: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.store, self.mqtt, self.extra = store, mqtt, extra
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ConsoleProcess:
        cmd = [sys.executable, "-m", "lab.cli", "kms", "serve", "--store", str(self.store), "--listen", "127.0.0.1:0",
               "--json", *self.extra] + (["--mqtt", self.mqtt] if self.mqtt else [])
        self.log = self.store.parent / "console.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the console says where it serves, once it does
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"the console did not start: {self.log.read_text()}")
        ready = json.loads(line)
        assert ready["status"] == "serving"
        self.url = ready["url"]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        log = self.log.read_text()
        if exc[0] is None:  # a console that served the test without a server error
            assert "Traceback" not in log, log

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
