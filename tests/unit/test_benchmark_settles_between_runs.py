"""The latency run starts once the stack has finished the saturation run's work.

The saturation run ends when its last declaration is decided, but the stack may still
have follow-ups to do (a write-off per document line released, each a request and an
answer); a latency run started during them would measure them, not the offered load.
The stack is taken as done once the ends of the request and answer topics have not moved
for a while (runs of 3 December 2026: 2.0 to 2.1 s, the follow-ups already done)."""

from __future__ import annotations

from benchmarks.bench import settle


class _Stack:
    """End offsets of the watched partitions, one sample per look; a clock each look
    moves by ``step_s``."""

    def __init__(self, samples: list[dict[str, int]], step_s: float = 0.5) -> None:
        self.samples = samples
        self.looks = 0
        self.now = 0.0
        self.step_s = step_s

    async def ends(self) -> dict[str, int]:
        sample = self.samples[min(self.looks, len(self.samples) - 1)]
        self.looks += 1
        return sample

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_it_waits_until_nothing_moved_for_the_quiet_time() -> None:
    stack = _Stack([{"requests": 10}, {"requests": 20}, {"requests": 25}, {"requests": 25}])
    waited = await settle(stack.ends, quiet_s=2.0, max_s=60.0, clock=stack.clock, sleep=stack.sleep)
    assert waited is not None
    # moved until the third look (1.0 s), then still for 2 s
    assert waited == 3.0


async def test_a_stack_that_never_settles_is_given_up_on() -> None:
    stack = _Stack([{"requests": n} for n in range(1000)])
    waited = await settle(stack.ends, quiet_s=2.0, max_s=10.0, clock=stack.clock, sleep=stack.sleep)
    assert waited is None
    assert stack.now >= 10.0
