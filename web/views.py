"""The chat page at /, and its log-in and log-out.

Logging in is Django's own LoginView (a session, not a device token); the page
then talks to the WebSocket gateway and the REST API with that session: the
gateway gives the session a device of its own on its first connection.
"""

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from devices.services import end_session_device


class ChatLoginView(LoginView):
    template_name = "web/login.html"
    redirect_authenticated_user = True


@login_required
def chat(request):
    user = request.user
    config = {
        "user": {"id": user.pk, "username": user.get_username()},
        "csrfToken": get_token(request),
        "isStaff": user.is_staff,
    }
    return render(request, "web/chat.html", {"config": config})


@require_POST
def log_out(request):
    """End the session and revoke its WebSocket device (its sockets close with 4410)."""
    if request.user.is_authenticated:
        end_session_device(request.user, request.session)
    logout(request)
    return redirect("web:login")
