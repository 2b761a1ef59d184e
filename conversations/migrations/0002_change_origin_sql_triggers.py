"""Writes made with plain SQL on conversations_message enter the change log.

A row inserted, updated or deleted outside the app (psql, another service, a
data migration) gets the same treatment as the app's services give their
writes: the conversation's next seq, taken under the conversation's row lock;
a `conversations_change` row whose payload has exactly the shape of
`conversations.payloads.message_payload`; and, on commit, a NOTIFY on the
channel `realtime_changes` with {"conversation_id": .., "seq": ..}, which the
`listen_changes` process turns into the live event the app would have sent.
Those change rows carry origin 'sql'.

The app's own writes are left alone: the services (through
`changelog.logged_by_caller`) and the ORM receivers set `realtime.origin` to
'app' while they write, and every trigger here has `WHEN (<not app>)`. The app logs and
publishes those writes itself, so nothing is logged or published twice.

What a plain-SQL write means:
  * INSERT is a send. `seq` is always assigned here (a given value is
    replaced); columns plain SQL may leave out are filled: client_msg_id
    'sql-<uuid>', body '', version 1, created_at now(). Change
    'message.created' with actor = the sender. A row that collides with an
    existing message (same id, or same sender and client_msg_id: a retried
    import) takes no seq, so INSERT ... ON CONFLICT DO NOTHING leaves no hole
    in the log, and ON CONFLICT DO UPDATE is an update (below).
  * UPDATE of `body` is an edit: version + 1, edited_at now() (or the value
    the UPDATE set), the old body kept in conversations_messageedit, change
    'message.edited' with "edited_by": null and no actor (nobody in the app
    made it; null says "outside the app"). Setting the body it already has
    changes nothing.
  * UPDATE that sets `deleted_at` is a delete, exactly like `delete_message`:
    body '', version + 1, edit history erased, earlier log payloads of the
    message redacted (body '' and "redacted": true), change 'message.deleted'
    with "deleted_by": null.
  * DELETE becomes that same tombstone (the row stays; the statement reports
    0 rows): the product's deletes are tombstones, devices must learn of
    them, and log rows point at the message.
  * A tombstone is final, "delete wins": an UPDATE of a deleted message is
    skipped (0 rows), so is a DELETE of one.
  * An UPDATE that changes a message's conversation or seq is refused: those
    belong to the log. `version` and `edited_at` are the triggers' to set.
    Other columns (sender_device, reply_to, ...) change without a log entry,
    as when Django nulls `sender_device` after a device row is deleted.
  * TRUNCATE fires no row triggers and is not logged.
To write messages without any of this (a purge, a backfill that must not be
announced), run `SET LOCAL realtime.origin = 'app'` in the transaction first:
the triggers then stand aside and nothing is logged or published.

Plain-SQL edits and deletes take the message's row lock before the
conversation's, the app the other way round; if one races an app edit or
delete of the same message, PostgreSQL detects the deadlock and aborts one of
the two, which can be retried. Timestamps are written as DjangoJSONEncoder
writes them ("2026-11-27T07:13:57.099Z", milliseconds only when there are
microseconds). A later migration that renames or drops a column used here
must replace these functions.

PostgreSQL only: on other databases the SQL part is a no-op (the app there
has no plain-SQL writers to follow).
"""

from django.db import migrations, models

from core.migration_sql import on_postgresql

FORWARD_SQL = r"""
CREATE FUNCTION realtime_json_timestamp(ts timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN mod(extract(microseconds FROM ts)::bigint, 1000000) <> 0
                THEN '.' || to_char(ts AT TIME ZONE 'UTC', 'MS') ELSE '' END
        || 'Z'
$$;

-- The same JSON as conversations.payloads.message_payload.
CREATE FUNCTION realtime_message_payload(m conversations_message) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id,
        'conversation_id', m.conversation_id,
        'seq', m.seq,
        'sender', m.sender_id,
        'sender_device', m.sender_device_id,
        'client_msg_id', m.client_msg_id,
        'body', m.body,
        'reply_to', m.reply_to_id,
        'version', m.version,
        'created_at', realtime_json_timestamp(m.created_at),
        'edited_at', realtime_json_timestamp(m.edited_at),
        'deleted', m.deleted_at IS NOT NULL,
        'deleted_at', realtime_json_timestamp(m.deleted_at)
    )
$$;

-- The conversation's next seq. The UPDATE's row lock, held until commit,
-- orders it with the app's writes exactly as select_for_update does.
CREATE FUNCTION realtime_take_seq(conversation bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    UPDATE conversations_conversation SET last_seq = last_seq + 1
        WHERE id = conversation RETURNING last_seq INTO next_seq;
    IF next_seq IS NULL THEN
        RAISE EXCEPTION 'conversation % does not exist', conversation
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN next_seq;
END
$$;

-- Append to the log and ring the doorbell (delivered on commit, in commit order).
CREATE FUNCTION realtime_log_change(
    conversation bigint, change_seq bigint, change_kind text, change_payload jsonb,
    change_actor integer, change_message bigint
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversations_change
        (conversation_id, seq, kind, payload, actor_id, message_id, created_at, origin)
    VALUES (conversation, change_seq, change_kind, change_payload, change_actor, change_message, now(), 'sql');
    PERFORM pg_notify('realtime_changes',
        json_build_object('conversation_id', conversation, 'seq', change_seq)::text);
END
$$;

CREATE FUNCTION realtime_message_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.client_msg_id := coalesce(NEW.client_msg_id, 'sql-' || gen_random_uuid());
    NEW.body := coalesce(NEW.body, '');
    NEW.version := coalesce(NEW.version, 1);
    NEW.created_at := coalesce(NEW.created_at, now());
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.body := '';  -- a tombstone has no body
    END IF;
    PERFORM 1 FROM conversations_conversation WHERE id = NEW.conversation_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM conversations_message
               WHERE id = NEW.id OR (sender_id = NEW.sender_id AND client_msg_id = NEW.client_msg_id)) THEN
        -- The row collides with a message: the INSERT fails, or its ON CONFLICT
        -- clause applies (DO UPDATE goes through the update triggers). Taking a
        -- seq here would leave a hole in the log.
        NEW.seq := 0;
    ELSE
        NEW.seq := realtime_take_seq(NEW.conversation_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION realtime_message_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM realtime_log_change(NEW.conversation_id, NEW.seq, 'message.created',
        realtime_message_payload(NEW), NEW.sender_id, NEW.id);
    RETURN NULL;
END
$$;

CREATE FUNCTION realtime_message_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.conversation_id IS DISTINCT FROM OLD.conversation_id OR NEW.seq IS DISTINCT FROM OLD.seq THEN
        RAISE EXCEPTION 'message %: conversation_id and seq cannot change', OLD.id
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'They belong to the conversation''s change log.';
    END IF;
    IF OLD.deleted_at IS NOT NULL THEN
        RETURN NULL;  -- a tombstone is final: a delete wins over any later write
    END IF;
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.body := '';
        NEW.version := OLD.version + 1;
        NEW.edited_at := OLD.edited_at;
    ELSIF NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.version := OLD.version + 1;
        IF NEW.edited_at IS NOT DISTINCT FROM OLD.edited_at THEN
            NEW.edited_at := now();
        END IF;
    ELSE
        -- Not an edit: the version and edit time stay what the log says.
        NEW.version := OLD.version;
        NEW.edited_at := OLD.edited_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION realtime_message_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        next_seq := realtime_take_seq(NEW.conversation_id);
        DELETE FROM conversations_messageedit WHERE message_id = NEW.id;
        -- Also by payload id: an ORM delete nulls change.message_id before its DELETE.
        UPDATE conversations_change
            SET payload = payload || '{"body": "", "redacted": true}'::jsonb
            WHERE (message_id = NEW.id
                   OR (conversation_id = NEW.conversation_id
                       AND kind IN ('message.created', 'message.edited')
                       AND payload->>'id' = NEW.id::text))
              AND coalesce(payload->>'body', '') <> '';
        PERFORM realtime_log_change(NEW.conversation_id, next_seq, 'message.deleted',
            realtime_message_payload(NEW) || jsonb_build_object('deleted_by', NULL), NULL, NEW.id);
    ELSIF NEW.body IS DISTINCT FROM OLD.body THEN
        next_seq := realtime_take_seq(NEW.conversation_id);
        INSERT INTO conversations_messageedit (message_id, version, body, edited_by_id, edited_at)
            VALUES (NEW.id, OLD.version, OLD.body, NULL, NEW.edited_at);
        PERFORM realtime_log_change(NEW.conversation_id, next_seq, 'message.edited',
            realtime_message_payload(NEW) || jsonb_build_object('edited_by', NULL), NULL, NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION realtime_message_before_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted_at IS NULL THEN
        -- Goes through the update triggers above: tombstone, log, notify.
        UPDATE conversations_message SET deleted_at = now() WHERE id = OLD.id;
    END IF;
    RETURN NULL;  -- the row stays, as a tombstone
END
$$;

CREATE TRIGGER realtime_message_before_insert BEFORE INSERT ON conversations_message
    FOR EACH ROW WHEN (coalesce(current_setting('realtime.origin', true), '') <> 'app')
    EXECUTE FUNCTION realtime_message_before_insert();
CREATE TRIGGER realtime_message_after_insert AFTER INSERT ON conversations_message
    FOR EACH ROW WHEN (coalesce(current_setting('realtime.origin', true), '') <> 'app')
    EXECUTE FUNCTION realtime_message_after_insert();
CREATE TRIGGER realtime_message_before_update BEFORE UPDATE ON conversations_message
    FOR EACH ROW WHEN (coalesce(current_setting('realtime.origin', true), '') <> 'app')
    EXECUTE FUNCTION realtime_message_before_update();
CREATE TRIGGER realtime_message_after_update AFTER UPDATE ON conversations_message
    FOR EACH ROW WHEN (coalesce(current_setting('realtime.origin', true), '') <> 'app')
    EXECUTE FUNCTION realtime_message_after_update();
CREATE TRIGGER realtime_message_before_delete BEFORE DELETE ON conversations_message
    FOR EACH ROW WHEN (coalesce(current_setting('realtime.origin', true), '') <> 'app')
    EXECUTE FUNCTION realtime_message_before_delete();

-- For the listener's catch-up (plain-SQL changes by id, and by age); app changes stay out.
CREATE INDEX conversations_change_sql_id_idx ON conversations_change (id) WHERE origin = 'sql';
CREATE INDEX conversations_change_sql_created_idx ON conversations_change (created_at, id)
    WHERE origin = 'sql';
"""

REVERSE_SQL = r"""
DROP INDEX IF EXISTS conversations_change_sql_created_idx;
DROP INDEX IF EXISTS conversations_change_sql_id_idx;
DROP TRIGGER IF EXISTS realtime_message_before_delete ON conversations_message;
DROP TRIGGER IF EXISTS realtime_message_after_update ON conversations_message;
DROP TRIGGER IF EXISTS realtime_message_before_update ON conversations_message;
DROP TRIGGER IF EXISTS realtime_message_after_insert ON conversations_message;
DROP TRIGGER IF EXISTS realtime_message_before_insert ON conversations_message;
DROP FUNCTION IF EXISTS realtime_message_before_delete();
DROP FUNCTION IF EXISTS realtime_message_after_update();
DROP FUNCTION IF EXISTS realtime_message_before_update();
DROP FUNCTION IF EXISTS realtime_message_after_insert();
DROP FUNCTION IF EXISTS realtime_message_before_insert();
DROP FUNCTION IF EXISTS realtime_log_change(bigint, bigint, text, jsonb, integer, bigint);
DROP FUNCTION IF EXISTS realtime_take_seq(bigint);
DROP FUNCTION IF EXISTS realtime_message_payload(conversations_message);
DROP FUNCTION IF EXISTS realtime_json_timestamp(timestamptz);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="change",
            name="origin",
            field=models.CharField(
                choices=[("app", "App"), ("sql", "Plain SQL")], default="app", editable=False, max_length=8
            ),
        ),
        migrations.RunPython(on_postgresql(FORWARD_SQL), on_postgresql(REVERSE_SQL), elidable=False),
    ]
