"""The WebSocket gateway: one connection per device, live events, catch-up.

consumer.py    the Channels consumer: handshake, frames in, close
auth.py        who is connecting (token header, token query, session) and from where
connection.py  one device's connection: which conversations it follows
stream.py      one conversation's ordered, gapless, exactly-once stream to a device
log_reads.py   reads of the change log shared by the process's streams
hub.py         the process-local fan-out: one channel-layer subscription per process
upkeep.py      the hub's periodic work: heartbeats, group refresh, reconciliation, presence
drain.py       closing every connection on SIGTERM before the server exits
health.py      GET /readyz: may a load balancer send this process new connections?
admission.py   how many handshakes and syncs a process takes on at once
inbox.py       a connection's requests: admitted under its limits, run in order
limits.py      token buckets per connection and per user
transport.py   sending frames to Daphne's connections; output not read yet, and dropping it
compression.py permessage-deflate: what is accepted of a client's offer, deflating frames
requests.py    the requests a device may send, each calling a service
typing.py      one connection's typing indicators (never stored)
frames.py      encoding replies and errors; decoding requests
close_codes.py the close codes (docs/protocol.md lists them)
"""
