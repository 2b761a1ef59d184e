"""How long to wait before the next connection attempt.

Exponential, capped, with "equal jitter": the wait for attempt n is drawn
uniformly between half and all of min(maximum, initial * factor**n). The
jitter spreads out devices that lost the same server at the same moment; the
lower half-bound keeps any one device from hammering the server with
near-zero waits. A server's `overloaded` hint replaces this entirely: it is
already spread out (docs/protocol.md §2).
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and factor >= 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt `attempt` (0 for the first retry)."""
        # Compare exponents rather than compute a huge power for a large attempt.
        if attempt > 64:
            return self.maximum
        return min(self.maximum, self.initial * self.factor**attempt)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(attempt)
        return (rng or random).uniform(ceiling / 2, ceiling)
