"""Writes to dramatiq's log pipe are serialized, so two logging threads never interleave a frame."""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading

from dramatiq.compat import StreamablePipe

from pipeline.logs import SerializedStream, serialized


def test_big_records_from_many_threads_arrive_whole_through_the_serialized_pipe() -> None:
    # Unserialized, 40 threads writing records of 5-32 KB to a StreamablePipe at once corrupt its framing
    # (measured: 10 of 10 trials); serialized, every record arrives whole.
    read_end, write_end = multiprocessing.Pipe(duplex=False)
    stream = SerializedStream(StreamablePipe(write_end))
    records = [chr(ord("a") + n % 26) * (5000 + 700 * n) for n in range(40)]
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(read_end.recv_bytes() for _ in records), daemon=True)
    reader.start()
    writers = [threading.Thread(target=stream.write, args=(record,), daemon=True) for record in records]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=10)
    reader.join(timeout=10)
    assert sorted(r.decode() for r in received) == sorted(records)


def test_serialized_puts_stderr_stdout_and_their_handlers_behind_one_lock(monkeypatch) -> None:
    _read_end, write_end = multiprocessing.Pipe(duplex=False)
    pipe = StreamablePipe(write_end)
    handler = logging.StreamHandler(pipe)
    logging.getLogger("dramatiq.test-pipe").addHandler(handler)
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        shared = serialized(pipe)
        assert isinstance(shared, SerializedStream) and shared.stream is pipe
        assert sys.stderr is shared and sys.stdout is shared and handler.stream is shared
        assert serialized(sys.stderr) is shared  # once only
    finally:
        logging.getLogger("dramatiq.test-pipe").removeHandler(handler)
