"""Every admin page loads with data in it; search and filters narrow the lists."""

import pytest
from django.urls import reverse

from conversations.models import Change, Conversation, Membership, Message, MessageEdit
from delivery.models import ReceiptCursor
from presence.models import DevicePresence, UserPresence


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_page(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


# Each admin page, with the object to open and a text its pages must show.
PAGES = {
    "device": lambda w: (w["alice_laptop"], "alice-laptop"),
    "conversation": lambda w: (w["group"], "Planning"),
    "membership": lambda w: (Membership.objects.get(conversation=w["group"], user=w["bob"]), "bob"),
    "message": lambda w: (w["hello"], "hello team"),
    "message_edit": lambda w: (MessageEdit.objects.get(message=w["agenda"]), "agenda v1"),
    "change": lambda w: (Change.objects.get(conversation=w["group"], seq=1), "conversation.created"),
    "receipt_cursor": lambda w: (ReceiptCursor.objects.get(user=w["bob"]), "bob"),
    "device_presence": lambda w: (DevicePresence.objects.get(device=w["alice_laptop"]), "alice-laptop"),
    "user_presence": lambda w: (UserPresence.objects.get(user=w["alice"]), "alice"),
}


@pytest.mark.parametrize("name", PAGES)
def test_changelist_lists_the_object(admin_client, world, name):
    obj, text = PAGES[name](world)
    response = admin_client.get(changelist(type(obj)))
    assert response.status_code == 200
    assert obj in response.context["cl"].result_list
    assert text in response.content.decode()


@pytest.mark.parametrize("name", PAGES)
def test_change_page_shows_the_object(admin_client, world, name):
    obj, text = PAGES[name](world)
    response = admin_client.get(change_page(obj))
    assert response.status_code == 200
    assert response.context["original"] == obj
    assert text in response.content.decode()


@pytest.mark.parametrize("name", PAGES)
def test_date_hierarchy_drilldown_loads(admin_client, world, name):
    obj, _ = PAGES[name](world)
    hierarchy = admin_client.get(changelist(type(obj))).context["cl"].model_admin.date_hierarchy
    when = getattr(obj, hierarchy)
    response = admin_client.get(
        changelist(type(obj)), {f"{hierarchy}__year": when.year, f"{hierarchy}__month": when.month}
    )
    assert response.status_code == 200
    assert obj in response.context["cl"].result_list


def test_admin_index_lists_every_model(admin_client, world):
    content = admin_client.get(reverse("admin:index")).content.decode()
    for name in (
        "Devices",
        "Conversations",
        "Memberships",
        "Messages",
        "Message edits",
        "Changes",
        "Receipt cursors",
        "Device presences",
        "User presences",
    ):
        assert name in content


def test_searching_conversations_by_title_and_member(admin_client, world):
    found = admin_client.get(changelist(Conversation), {"q": "Planning"}).context["cl"].result_list
    assert list(found) == [world["group"]]
    found = admin_client.get(changelist(Conversation), {"q": "bob"}).context["cl"].result_list
    assert sorted(c.pk for c in found) == sorted([world["group"].pk, world["direct"].pk])
    found = admin_client.get(changelist(Conversation), {"q": "carol"}).context["cl"].result_list
    assert list(found) == []


def test_searching_messages_by_body(admin_client, world):
    found = admin_client.get(changelist(Message), {"q": "agenda"}).context["cl"].result_list
    assert list(found) == [world["agenda"]]


def test_searching_changes_by_conversation_id_and_text(admin_client, world):
    direct = world["direct"]
    direct.refresh_from_db()
    found = admin_client.get(changelist(Change), {"q": str(direct.pk)}).context["cl"].result_list
    assert {change.conversation_id for change in found} == {direct.pk}
    assert len(found) == direct.last_seq
    # A word is not an id: it still searches the text columns instead of failing.
    response = admin_client.get(changelist(Change), {"q": "edited"})
    assert response.status_code == 200
    assert [change.kind for change in response.context["cl"].result_list] == ["message.edited"]


def test_filtering_messages_by_state(admin_client, world):
    found = admin_client.get(changelist(Message), {"state": "edited"}).context["cl"].result_list
    assert list(found) == [world["agenda"]]
    found = admin_client.get(changelist(Message), {"state": "live"}).context["cl"].result_list
    assert set(found) == {world["hello"], world["secret"]}


def test_filtering_changes_by_kind(admin_client, world):
    found = admin_client.get(changelist(Change), {"kind__exact": "message.created"}).context["cl"].result_list
    assert sorted(change.message_id for change in found) == sorted(
        m.pk for m in (world["hello"], world["agenda"], world["secret"])
    )


def test_filtering_conversations_by_kind(admin_client, world):
    found = admin_client.get(changelist(Conversation), {"kind__exact": "direct"}).context["cl"].result_list
    assert list(found) == [world["direct"]]
    assert found[0].member_count == 2


def test_filtering_presence_by_status(admin_client, world):
    found = admin_client.get(changelist(UserPresence), {"status__exact": "online"}).context["cl"].result_list
    assert [p.user for p in found] == [world["alice"]]
    found = admin_client.get(changelist(UserPresence), {"status__exact": "away"}).context["cl"].result_list
    assert list(found) == []


@pytest.mark.parametrize("name", ["membership", "message_edit", "receipt_cursor", "device_presence", "user_presence"])
def test_state_and_history_pages_are_view_only(admin_client, world, name):
    obj, _ = PAGES[name](world)
    content = admin_client.get(change_page(obj)).content.decode()
    assert 'name="_save"' not in content
    assert admin_client.post(change_page(obj), {}).status_code == 403
    add_url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_add")
    assert admin_client.get(add_url).status_code == 403
