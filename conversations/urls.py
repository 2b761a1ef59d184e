"""REST routes of the conversations app."""

from django.urls import path

from . import views

urlpatterns = [
    path("users", views.UserSearchView.as_view(), name="user-search"),
    path("conversations", views.ConversationListView.as_view(), name="conversation-list"),
    path("conversations/<int:conversation_id>", views.ConversationDetailView.as_view(), name="conversation-detail"),
    path("conversations/<int:conversation_id>/members", views.MemberListView.as_view(), name="member-list"),
    path(
        "conversations/<int:conversation_id>/members/<int:user_id>",
        views.MemberDetailView.as_view(),
        name="member-detail",
    ),
    path("conversations/<int:conversation_id>/messages", views.MessageListView.as_view(), name="message-list"),
    path(
        "conversations/<int:conversation_id>/messages/<int:message_id>",
        views.MessageDetailView.as_view(),
        name="message-detail",
    ),
    path("conversations/<int:conversation_id>/changes", views.ChangeListView.as_view(), name="change-list"),
]
