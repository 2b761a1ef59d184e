"""The chat page and its log-in, at the site's root."""

from django.urls import path

from . import views

app_name = "web"

urlpatterns = [
    path("", views.chat, name="chat"),
    path("login/", views.ChatLoginView.as_view(), name="login"),
    path("logout/", views.log_out, name="logout"),
]
