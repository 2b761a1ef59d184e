"""Which channel-layer groups the hub's channel is in, kept in step with the
groups its connections follow, in batches.

Every connection follows groups of its own (its user's, its device's), so a
reconnect storm asks for thousands of joins at once, and every close for
leaves. One by one, each was a round trip to Redis, made in turn. Here what is
asked while a batch is in flight goes into the next one, joined or left in one
round trip (`group_add_many`, `group_discard_many` of core.channel_layer; any
other layer, group by group).

A batch decides by what is wanted when it runs, not by what was asked: a
group left and followed again before its batch is not left at all, and one
followed and let go again is not joined.
"""

import asyncio
from collections.abc import Callable, Iterable

# Groups per round trip: a rejoin after an outage joins every group at once,
# tens of thousands on a busy process; in slices, no pipeline grows unbounded.
MAX_GROUPS_PER_CALL = 1000


class LayerGroups:
    def __init__(self, layer, channel: str, *, is_wanted: Callable[[str], bool], on_failure: Callable):
        self.layer = layer
        self.channel = channel
        self.joined: set[str] = set()
        self._is_wanted = is_wanted  # whether a local connection follows the group
        self._on_failure = on_failure  # (what it was doing, the error): the layer failed
        self._pending: dict[str, asyncio.Future | None] = {}  # group -> its joiners' future (None: a leave)
        self._lock = asyncio.Lock()  # one batch at a time (rejoin_all included)
        self._worker: asyncio.Task | None = None

    async def join(self, group: str) -> None:
        """Returns once the layer routes the group's messages to the channel, or
        once joining failed (the hub's recovery joins it later)."""
        if group in self.joined:
            return
        future = self._pending.get(group)
        if future is None:
            future = self._pending[group] = asyncio.get_running_loop().create_future()
            self._start()
        await asyncio.shield(future)

    def leave(self, group: str) -> None:
        """Leave the group, in a batch to come, unless it is followed again by then."""
        if group not in self._pending:
            self._pending[group] = None
            self._start()

    async def rejoin_all(self, groups: Iterable[str]) -> None:
        """Join these groups again, all at once (channels-redis expires group
        membership; a restarted Redis forgot it). Raises if the layer does."""
        async with self._lock:
            wanted = [group for group in groups if self._is_wanted(group)]
            if wanted:
                await _add(self.layer, wanted, self.channel)
                self.joined.update(wanted)

    def _start(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            batch: dict[str, asyncio.Future | None] = {}
            try:
                async with self._lock:
                    batch, self._pending = self._pending, {}
                    await self._apply(batch)
            finally:  # whatever happened, nobody waits forever
                for future in batch.values():
                    if future is not None and not future.done():
                        future.set_result(None)

    async def _apply(self, batch: dict[str, asyncio.Future | None]) -> None:
        to_join = [group for group in batch if self._is_wanted(group) and group not in self.joined]
        to_leave = [group for group in batch if not self._is_wanted(group) and group in self.joined]
        if to_leave:
            self.joined.difference_update(to_leave)  # a failed leave expires in Redis by itself
            try:
                await _discard(self.layer, to_leave, self.channel)
            except Exception as error:
                self._on_failure(f"leaving {len(to_leave)} group(s)", error)
        if to_join:
            try:
                await _add(self.layer, to_join, self.channel)
            except Exception as error:
                self._on_failure(f"joining {len(to_join)} group(s)", error)
            else:
                self.joined.update(to_join)


async def _add(layer, groups: list[str], channel: str) -> None:
    await _in_slices(layer, "group_add", groups, channel)


async def _discard(layer, groups: list[str], channel: str) -> None:
    await _in_slices(layer, "group_discard", groups, channel)


async def _in_slices(layer, call: str, groups: list[str], channel: str) -> None:
    """The layer's `<call>_many` for each slice of MAX_GROUPS_PER_CALL groups,
    or, for a layer without it, its `<call>` for each group."""
    many = getattr(layer, f"{call}_many", None)
    if many is not None:
        for start in range(0, len(groups), MAX_GROUPS_PER_CALL):
            await many(groups[start : start + MAX_GROUPS_PER_CALL], channel)
    else:
        for group in groups:
            await getattr(layer, call)(group, channel)
