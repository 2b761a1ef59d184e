"""REST routes of the delivery app."""

from django.urls import path

from . import views

urlpatterns = [
    path("conversations/<int:conversation_id>/read", views.ReadView.as_view(), name="conversation-read"),
    path("conversations/<int:conversation_id>/delivered", views.DeliveredView.as_view(), name="conversation-delivered"),
    path(
        "conversations/<int:conversation_id>/receipts",
        views.ConversationReceiptsView.as_view(),
        name="conversation-receipts",
    ),
    path(
        "conversations/<int:conversation_id>/messages/<int:message_id>/receipts",
        views.MessageReceiptsView.as_view(),
        name="message-receipts",
    ),
]
