"""Follow a user's conversations from the command line, resuming where the
last run stopped.

    python follow.py --token TOKEN --cursors me.json            # catch up, then follow live
    python follow.py --token TOKEN --cursors me.json --once     # catch up and exit
    python follow.py --token TOKEN --cursors me.json --send 1 "Hello"

Each change is printed once: the cursors file remembers what was printed.
"""

import argparse
import asyncio
import contextlib

from realtime_sync_client import Client, JsonFileCursorStore, LogEvent, Reset


def show(event: LogEvent) -> None:
    line = f"conversation {event.conversation_id} seq {event.seq} {event.kind}"
    message = event.message
    if message is not None:
        line += f" from user {message.sender}: {message.body}" if not message.deleted else " (deleted)"
    print(line, flush=True)


def reload(reset: Reset) -> None:
    # A real application reloads the conversation over REST here (GET /api/v1/conversations/{id}/messages).
    print(f"conversation {reset.conversation_id} reset to seq {reset.last_seq} ({reset.reason}): reload it", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://localhost:8000/ws/v1/")
    parser.add_argument("--token", required=True)
    parser.add_argument("--cursors", required=True, help="JSON file keeping the cursors between runs")
    parser.add_argument("--send", nargs=2, metavar=("CONVERSATION_ID", "TEXT"))
    parser.add_argument("--once", action="store_true", help="exit after catching up (and sending)")
    args = parser.parse_args()

    store = JsonFileCursorStore(args.cursors)
    async with Client(args.url, token=args.token, cursor_store=store, on_event=show, on_reset=reload) as client:
        if args.send:
            result = await client.send(int(args.send[0]), args.send[1])
            print(f"sent: message {result.message_id}, seq {result.seq}", flush=True)
            await client.until_applied(result.conversation_id, result.seq)  # and shown
        if not args.once:
            print("following live; Ctrl-C to stop", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
