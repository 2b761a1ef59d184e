"""The publishes of one event loop, sent together when they pile up.

One publish to Redis costs about 0.65 ms of CPU on its own and under 0.1 ms in
a `group_send_many` of hundreds (core/channel_layer.py). Many conversations
publish at once on a busy server, each from its own publish line, so the
outbox keeps one `group_send_many` in flight per loop: a publish made while
none is in flight goes at once, from its caller's task, and those made
meanwhile wait for it and then go together, in the order they were made. A
quiet server pays nothing more; a saturated one pays a round trip for many
conversations.

Each caller waits for the send that carried its messages, and gets its error
if that send failed (the whole batch failed with it: the layer is down).
"""

import asyncio
import weakref


class LayerOutbox:
    def __init__(self, layer, skip_channel: str | None = None):
        self.layer = layer
        # The loop's hub, which takes the loop's own publishes directly (core.publish).
        self.skip_channel = skip_channel
        self._waiting: list[tuple[list[tuple[str, dict]], asyncio.Future]] = []
        self._sending = False

    async def send(self, messages: list[tuple[str, dict]]) -> None:
        """Send these (group, message) pairs, after those handed over before."""
        if not self._sending:
            # Nothing in flight: send from this task, without a hop to another.
            self._sending = True
            try:
                await self.layer.group_send_many(messages, self.skip_channel)
            finally:
                self._send_the_rest()
            return
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((messages, done))
        await done

    def _send_the_rest(self) -> None:
        if self._waiting:
            asyncio.get_running_loop().create_task(self._send_waiting())
        else:
            self._sending = False

    async def _send_waiting(self) -> None:
        try:
            batch, self._waiting = self._waiting, []
            try:
                await self.layer.group_send_many(
                    [pair for messages, _ in batch for pair in messages], self.skip_channel
                )
            except Exception as error:
                for _, done in batch:
                    if not done.done():  # a caller that timed out no longer waits
                        done.set_exception(error)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._send_the_rest()


_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LayerOutbox]" = weakref.WeakKeyDictionary()


def outbox_for(layer, skip_channel: str | None = None) -> LayerOutbox:
    """The running loop's outbox for `layer` (one per server process), which
    sends to every member of a group but `skip_channel`."""
    loop = asyncio.get_running_loop()
    outbox = _per_loop.get(loop)
    if outbox is None or outbox.layer is not layer or outbox.skip_channel != skip_channel:
        outbox = _per_loop[loop] = LayerOutbox(layer, skip_channel)
    return outbox
