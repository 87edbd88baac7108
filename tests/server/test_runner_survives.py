"""The pack runner thread must survive a database failure while it finishes a job (the
job's status read or written after its renderer exits): otherwise no pack is rendered
again until the server restarts, though every request is still queued with 202."""

from __future__ import annotations

import threading
import time

from escrow.errors import DatabaseUnavailable
from escrow.server.packs import PackRunner


class _Jobs:
    def __init__(self) -> None:
        self.claims = 0
        self.lock = threading.Lock()

    def claim(self) -> str | None:
        with self.lock:
            self.claims += 1
            return f"job{self.claims}" if self.claims <= 3 else None


def test_a_database_failure_after_a_render_does_not_stop_the_runner() -> None:
    jobs = _Jobs()
    runner = PackRunner(jobs, settings=None, poll_s=0.05)  # type: ignore[arg-type]
    rendered: list[str] = []

    def render(job_id: str) -> None:
        rendered.append(job_id)
        if job_id == "job1":  # jobs.get/finish after the child exited: the database is gone
            raise DatabaseUnavailable("Cannot read the pack job: connection refused.")

    runner._render = render  # type: ignore[method-assign]
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while len(rendered) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rendered == ["job1", "job2", "job3"]
        assert runner._thread.is_alive()
    finally:
        runner.stop()
