"""The send on PostgreSQL, as one function: one statement from the app.

A send's transaction holds its conversation's row lock from the seq to the
commit, and every send to the conversation waits for it. Made of ORM calls,
that section was four round trips and the Python between them, on a thread
that shares the GIL with the event loop's fan-out: 4–5 ms under load, so one
conversation took about 200 sends a second at most. As one statement run
outside a transaction, the lock is held inside PostgreSQL only, for the
function's few statements and its commit.

`realtime_send_message` does what `conversations.services.messages._send`
does with the ORM, in the same order and with the same result:

  1. row-lock the conversation (none: outcome 'no_conversation');
  2. check the sender is an active member; each statement of a VOLATILE
     function reads a new snapshot, so a removal that committed while the
     send waited for the lock is seen (not one: 'not_member');
  3. check `reply_to` is a message of the conversation ('bad_reply_to');
  4. take the next seq, insert the message (its unique (sender,
     client_msg_id) is the idempotency check: a retry raises
     unique_violation and the whole statement rolls back, seq included),
     and log 'message.created' with the payload of
     `realtime_message_payload` (migration 0002), origin 'app'.

It sets `realtime.origin` to 'app' while it writes, so the triggers of
migration 0002 stand aside (the app publishes the send itself), and puts the
previous value back for the rest of a caller's transaction. The refusals
change nothing: the lock is released at commit, no seq is taken.

PostgreSQL only, like migration 0002.
"""

from django.db import migrations

from core.migration_sql import on_postgresql

FORWARD_SQL = r"""
CREATE FUNCTION realtime_send_message(
    conversation bigint, sender integer, device bigint, msg_client_id text, msg_body text,
    msg_reply_to bigint, msg_created_at timestamptz
) RETURNS TABLE (outcome text, message_id bigint, message_seq bigint, change_payload jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    previous_origin text := coalesce(current_setting('realtime.origin', true), '');
    next_seq bigint;
    m conversations_message;
BEGIN
    PERFORM 1 FROM conversations_conversation WHERE id = conversation FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_conversation', NULL::bigint, NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM conversations_membership
                   WHERE conversation_id = conversation AND user_id = sender AND is_active) THEN
        RETURN QUERY SELECT 'not_member', NULL::bigint, NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;
    IF msg_reply_to IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM conversations_message WHERE id = msg_reply_to AND conversation_id = conversation) THEN
        RETURN QUERY SELECT 'bad_reply_to', NULL::bigint, NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;

    PERFORM set_config('realtime.origin', 'app', true);
    UPDATE conversations_conversation SET last_seq = last_seq + 1
        WHERE id = conversation RETURNING last_seq INTO next_seq;
    INSERT INTO conversations_message
        (conversation_id, sender_id, sender_device_id, client_msg_id, body, reply_to_id, seq, version, created_at)
        VALUES (conversation, sender, device, msg_client_id, msg_body, msg_reply_to, next_seq, 1, msg_created_at)
        RETURNING * INTO m;
    change_payload := realtime_message_payload(m);
    INSERT INTO conversations_change
        (conversation_id, seq, kind, payload, actor_id, message_id, created_at, origin)
        VALUES (conversation, next_seq, 'message.created', change_payload, sender, m.id, msg_created_at, 'app');
    PERFORM set_config('realtime.origin', previous_origin, true);

    outcome := 'sent';
    message_id := m.id;
    message_seq := next_seq;
    RETURN NEXT;
END
$$;
"""

REVERSE_SQL = r"""
DROP FUNCTION IF EXISTS realtime_send_message(bigint, integer, bigint, text, text, bigint, timestamptz);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0002_change_origin_sql_triggers"),
    ]

    operations = [
        migrations.RunPython(on_postgresql(FORWARD_SQL), on_postgresql(REVERSE_SQL), elidable=False),
    ]
