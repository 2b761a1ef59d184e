"""REST routes of the presence app."""

from django.urls import path

from .views import PresenceDetailView, PresenceListView

urlpatterns = [
    path("presence", PresenceListView.as_view(), name="presence-list"),
    path("presence/<int:user_id>", PresenceDetailView.as_view(), name="presence-detail"),
]
