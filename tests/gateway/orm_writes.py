"""Plain ORM code, as a Django developer writes it, and a URL to run it in a server.

The functions below touch conversations, memberships and messages with the
ORM only: no service, no log, no publish of their own. A gateway test runs them
either in the test process (another process, like a shell or a job) or inside
the server process, by POSTing to /test-only/orm/<name> (the URL exists only
with `tests.gateway.orm_server_settings`).
"""

import json

from django.db import transaction
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from conversations.models import Conversation, Membership, Message
from core.errors import ServiceError
from realtime_sync.urls import urlpatterns as project_urlpatterns


def create_message(conversation_id, sender_id, body):
    message = Message.objects.create(conversation_id=conversation_id, sender_id=sender_id, body=body)
    return {"id": message.pk, "seq": message.seq}


def edit_message(message_id, body):
    message = Message.objects.get(pk=message_id)
    message.body = body
    message.save()
    return {"version": message.version}


def delete_message(message_id):
    Message.objects.get(pk=message_id).delete()
    return {}


def rename_conversation(conversation_id, title):
    conversation = Conversation.objects.get(pk=conversation_id)
    conversation.title = title
    conversation.save()
    return {"last_seq": conversation.last_seq}


def add_member(conversation_id, user_id):
    return {"joined_seq": Membership.objects.create(conversation_id=conversation_id, user_id=user_id).joined_seq}


def delete_member(conversation_id, user_id):
    Membership.objects.get(conversation_id=conversation_id, user_id=user_id).delete()
    return {}


class RolledBack(Exception):
    pass


def create_message_and_roll_back(conversation_id, sender_id, body):
    try:
        with transaction.atomic():
            create_message(conversation_id, sender_id, body)
            raise RolledBack
    except RolledBack:
        return {}


WRITES = {
    f.__name__: f
    for f in (
        create_message,
        edit_message,
        delete_message,
        rename_conversation,
        add_member,
        delete_member,
        create_message_and_roll_back,
    )
}


@csrf_exempt
def run(request, name):
    try:
        return JsonResponse(WRITES[name](**json.loads(request.body)))
    except ServiceError as error:
        return JsonResponse(error.as_dict(), status=error.http_status)


urlpatterns = [*project_urlpatterns, path("test-only/orm/<str:name>", run)]
