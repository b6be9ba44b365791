"""Structured logging: our lines and dramatiq's share one worker log pipe without interleaving."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.logs import log_event, setup_logging


class FramedPipe:
    """A stand-in for dramatiq's worker log pipe: a write that overlaps another one corrupts the stream."""

    def __init__(self) -> None:
        self.busy = False
        self.overlaps = 0
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        if self.busy:
            self.overlaps += 1
        self.busy = True
        time.sleep(0.0005)  # a send that takes a moment, so a concurrent one would land inside it
        self.lines.append(text)
        self.busy = False

    def flush(self) -> None:
        return None


def test_our_handler_and_the_root_handler_never_write_to_one_pipe_at_once():
    pipe = FramedPipe()
    root = logging.getLogger()
    dramatiq_handler = logging.StreamHandler(pipe)  # what dramatiq's basicConfig puts on the root logger
    root.addHandler(dramatiq_handler)
    try:
        setup_logging("INFO", stream=pipe)

        def log_both(n: int) -> None:
            for _ in range(20):
                log_event(logging.getLogger("stash2plex.test"), "ours", n=n)
                logging.getLogger("dramatiq.test").warning("theirs %s", n)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(log_both, range(8)))
    finally:
        root.removeHandler(dramatiq_handler)
        logging.getLogger("stash2plex").handlers.clear()
    assert pipe.overlaps == 0
    assert sum("ours" in line for line in pipe.lines) == 160 and sum("theirs" in line for line in pipe.lines) == 160
