"""The rate limiter paces requests to Plex and pauses every thread after a 429."""

from pipeline.pacing import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_no_limit_never_waits():
    fake = FakeTime()
    limiter = RateLimiter(0, clock=fake.clock, sleep=fake.sleep)
    assert sum(limiter.acquire() for _ in range(1000)) == 0


def test_rate_bounds_requests_per_second():
    fake = FakeTime()
    limiter = RateLimiter(10, burst=1, clock=fake.clock, sleep=fake.sleep)
    for _ in range(51):
        limiter.acquire()
    assert 4.9 <= fake.now <= 5.1  # 50 waits of 0.1 s after the first


def test_a_pause_holds_every_caller_until_it_ends():
    fake = FakeTime()
    limiter = RateLimiter(0, clock=fake.clock, sleep=fake.sleep)
    limiter.pause(3.0)
    waited = limiter.acquire()
    assert waited >= 3.0 and fake.now >= 3.0
