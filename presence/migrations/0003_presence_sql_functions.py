"""A device going online or offline on PostgreSQL, as one function each: one
statement from the app.

Every WebSocket handshake marks its device online and every close marks it
offline. Made of separate statements, each was a transaction of five or six
round trips (begin; the device's claim; the user's row lock; the devices'
statuses; the aggregate's update; commit), and a reconnect storm makes
thousands of both at once. As functions they do the same, in the same order
and with the same result as `presence.services` does with the ORM:

  * `realtime_recompute_presence(user, now)`: lock the user's presence row
    (created if missing), then read their devices' statuses in a statement
    of its own (each statement of a VOLATILE function reads a new snapshot,
    so it sees every device write committed while it waited for the lock),
    and store the aggregate (online > busy > away > offline; offline also
    records when the user was last seen). True if the aggregate changed.
  * `realtime_device_online(device, user, connection, status, now,
    check_active)`: if asked (the handshake asks), whether the device is
    still active (not revoked, its user active); if it is, claim its
    presence for this connection unless a newer connection of the device
    already holds it, then recompute. Returns (active, changed).
  * `realtime_device_offline(device, user, connection, now)`: take the
    device offline if this connection still holds it, then recompute.

Rows are locked in the ORM path's order (the device's presence, then the
user's), so the two paths, and the presence sweep, cannot deadlock each other.

PostgreSQL only; SQLite keeps the ORM path.
"""

from django.db import migrations

from core.migration_sql import on_postgresql

FORWARD_SQL = r"""
CREATE FUNCTION realtime_recompute_presence(presence_user integer, at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    best integer;
    aggregate text;
BEGIN
    INSERT INTO presence_userpresence (user_id, status, updated_at) VALUES (presence_user, 'offline', at)
    ON CONFLICT (user_id) DO UPDATE SET status = presence_userpresence.status
    RETURNING status INTO stored;
    SELECT coalesce(max(CASE p.status WHEN 'online' THEN 3 WHEN 'busy' THEN 2 WHEN 'away' THEN 1 ELSE 0 END), 0)
    INTO best
    FROM presence_devicepresence p JOIN devices_device d ON d.id = p.device_id
    WHERE d.user_id = presence_user AND d.revoked_at IS NULL;
    aggregate := CASE best WHEN 3 THEN 'online' WHEN 2 THEN 'busy' WHEN 1 THEN 'away' ELSE 'offline' END;
    IF aggregate = stored THEN
        RETURN false;
    END IF;
    IF aggregate = 'offline' THEN
        UPDATE presence_userpresence SET status = aggregate, updated_at = at,
            last_seen_at = coalesce((
                SELECT max(p.last_heartbeat_at) FROM presence_devicepresence p
                JOIN devices_device d ON d.id = p.device_id
                WHERE d.user_id = presence_user AND d.revoked_at IS NULL), at)
        WHERE user_id = presence_user;
    ELSE
        UPDATE presence_userpresence SET status = aggregate, updated_at = at WHERE user_id = presence_user;
    END IF;
    RETURN true;
END;
$$;

CREATE FUNCTION realtime_device_online(
    presence_device bigint, presence_user integer, connection text, device_status text, at timestamptz,
    check_active boolean
) RETURNS TABLE (active boolean, changed boolean) LANGUAGE plpgsql AS $$
BEGIN
    IF check_active AND NOT EXISTS (
            SELECT 1 FROM devices_device d JOIN auth_user u ON u.id = d.user_id
            WHERE d.id = presence_device AND d.revoked_at IS NULL AND u.is_active) THEN
        RETURN QUERY SELECT false, false;
        RETURN;
    END IF;
    INSERT INTO presence_devicepresence (device_id, status, connection_id, last_heartbeat_at, updated_at)
    VALUES (presence_device, device_status, connection, at, at)
    ON CONFLICT (device_id) DO UPDATE SET
        status = excluded.status,
        connection_id = excluded.connection_id,
        last_heartbeat_at = excluded.last_heartbeat_at,
        updated_at = excluded.updated_at
    WHERE presence_devicepresence.connection_id <= excluded.connection_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT true, false;
        RETURN;
    END IF;
    RETURN QUERY SELECT true, realtime_recompute_presence(presence_user, at);
END;
$$;

CREATE FUNCTION realtime_device_offline(presence_device bigint, presence_user integer, connection text, at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE presence_devicepresence SET status = 'offline', updated_at = at, last_heartbeat_at = at
    WHERE device_id = presence_device AND connection_id = connection;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    RETURN realtime_recompute_presence(presence_user, at);
END;
$$;
"""

REVERSE_SQL = """
DROP FUNCTION IF EXISTS realtime_device_offline(bigint, integer, text, timestamptz);
DROP FUNCTION IF EXISTS realtime_device_online(bigint, integer, text, text, timestamptz, boolean);
DROP FUNCTION IF EXISTS realtime_recompute_presence(integer, timestamptz);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("presence", "0002_device_presence_connection"),
    ]

    operations = [
        migrations.RunPython(on_postgresql(FORWARD_SQL), on_postgresql(REVERSE_SQL), elidable=False),
    ]
