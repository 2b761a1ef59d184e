"""What every app shares, and nothing that knows of any app.

    errors.py         domain errors with stable codes (ServiceError and kin)
    api_errors.py     how REST turns any error into the documented body
    openapi.py        the error body in the OpenAPI schema
    events.py         the event envelope and the channel-layer group names
    publish.py        publishing events after commit
    publish_order.py  a conversation's changes handed over in seq order
    coalesce.py       folding bursts of state updates into one broadcast per key
    server_loop.py    the gateway's event loop, for code on other threads
    db.py             running ORM work from async code on the DB thread pool
    db_pool.py        the check of a pooled PostgreSQL connection on checkout
    postgresql/       Django's PostgreSQL backend with that check (ENGINE "core.postgresql")
    admin_mixins.py   pieces the apps' admins share

Layers point one way: realtime_sync -> gateway -> domain apps -> core.
"""
