"""Blocks of the shared schedule, handed out by one process (high rates only)."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

from sendwell.ratelimit.base import Limits, RateLimiter, Reservation, StateChange

# At high rates a process takes the shared schedule's slots this many seconds at a time and hands
# them out itself: one database (or Redis) round trip per block instead of one per message. The
# slots are real slots of the shared schedule, so the rate holds; only at 100/s and more is a
# block more than one message.
BLOCK_SECONDS = 0.02
# A slot handed out more than this far in the past is not used (it would bunch with the next).
_STALE_SLOT = 0.02


@dataclasses.dataclass
class _Block:
    reservation: Reservation
    rate: float
    size: int
    base: float  # time.monotonic() of the block's first slot
    used: int = 0  # slots handed out or skipped
    handed: int = 0  # recipients handed out (counted against the quota)


_blocks: dict[str, _Block] = {}
_blocks_lock = threading.Lock()


class BlockLimiter:
    """Serves reservations from per-process blocks of the shared schedule (high rates only)."""

    def __init__(self, name: str, shared: RateLimiter) -> None:
        self.name = name
        self.shared = shared

    def reserve(self, recipients: int, limits: Limits, *, max_wait: float) -> Reservation:
        size = int(limits.rate * BLOCK_SECONDS)
        if size < 2 * recipients:
            return self.shared.reserve(recipients, limits, max_wait=max_wait)
        with _blocks_lock:
            now = time.monotonic()
            block = _blocks.get(self.name)
            # A learned rate changes a little on every report: a block a few percent off is
            # still good for its 20 ms (replacing it would leave its unused slots in the past).
            if block is not None and abs(block.rate - limits.rate) <= 0.05 * limits.rate:
                # Slots already past are skipped (a sender slower than the rate leaves them
                # unused; handing them out would send in a burst). A call of n goes at the first
                # of its n slots (see slot_start).
                first = max(block.used, math.ceil((now - _STALE_SLOT - block.base) * block.rate))
                slot = block.base + first / block.rate
                if first + recipients <= block.size and slot - now <= max_wait:
                    block.used = first + recipients
                    block.handed += recipients
                    return dataclasses.replace(
                        block.reservation, wait=max(0.0, slot - now), start=None
                    )
            if block is not None and block.handed < block.size:
                # Unused slots are gone with time; their quota count is given back.
                self.shared.refund(block.size - block.handed, block.reservation)
            _blocks.pop(self.name, None)
            # The block starts at its first slot; calls out of it wait for their own slots.
            reservation = self.shared.reserve(size, limits, max_wait=max_wait)
            if not reservation.allowed:
                # Near the daily quota a whole block may not fit where this call would.
                return self.shared.reserve(recipients, limits, max_wait=max_wait)
            base = time.monotonic() + reservation.wait
            block = _Block(reservation=reservation, rate=limits.rate, size=size, base=base)
            _blocks[self.name] = block
            block.used = block.handed = recipients
            return dataclasses.replace(
                reservation, wait=max(0.0, base - time.monotonic()), start=None
            )

    def refund(self, recipients: int, reservation: Reservation) -> None:
        self.shared.refund(recipients, reservation)

    def read_state(self) -> str:
        return self.shared.read_state()

    def update_state(self, change: StateChange) -> str:
        return self.shared.update_state(change)
