"""WebSocket close codes (docs/protocol.md lists them with what a client should do).

All are in the 4000-4999 range for applications: Daphne's WebSocket layer refuses
to send the RFC's 1001 (going away) and 1011 (internal error) from a server.
"""

# Missing, unknown or revoked token, or no logged-in session: do not retry with the same credentials.
UNAUTHORIZED = 4401
# The page's Origin is not one of the server's allowed hosts.
FORBIDDEN_ORIGIN = 4403
# Nothing received for longer than the heartbeat timeout.
HEARTBEAT_TIMEOUT = 4408
# The device was revoked while connected.
DEVICE_REVOKED = 4410
# The connection fell too far behind: too many events held before its first
# sync, or more unread output queued than WS_MAX_OUTBOUND_BYTES (the client is
# not reading). Reconnect and sync.
TOO_FAR_BEHIND = 4429
# The connection kept sending past its rate limit after being told to wait.
RATE_LIMITED = 4430
# The user already has WS_MAX_CONNECTIONS_PER_USER connections to this process.
TOO_MANY_CONNECTIONS = 4431
# The server failed this connection: reconnect and sync.
INTERNAL_ERROR = 4500
# The server is shutting down: reconnect (another process will take you) and sync.
GOING_AWAY = 4503
