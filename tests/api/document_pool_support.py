"""Driving the document pool's failure paths for real: a process stopped mid-job, then killed."""

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll until `condition()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def answer_with_process_killed_mid_job(pool: Any, pid: int, send: Callable[[], Any]) -> Any:
    """The answer to `send()` when the pool process `pid` is killed while holding its job."""
    os.kill(pid, signal.SIGSTOP)  # holds the next job until it is killed
    answers: list[Any] = []
    request = threading.Thread(target=lambda: answers.append(send()))
    request.start()
    try:
        wait_for(lambda: pool.in_flight == 1)
    finally:
        os.kill(pid, signal.SIGKILL)
    request.join(30)
    assert not request.is_alive()
    [answer] = answers
    return answer
