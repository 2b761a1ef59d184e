"""Admin for conversations, members, messages and the change log.

Every write made here goes through `conversations.services`, with the admin
user as the actor and `as_moderator=True`: a rename, a new or removed member,
an edited or deleted message gets the same change-log entry and the same live
event as when a member does it over the API, so devices stay in sync. Nothing
here saves those models directly; what has no service (creating a
conversation on someone's behalf, deleting one) is not offered.
"""

from . import changelog, conversation, message  # noqa: F401  (importing registers the admins)
