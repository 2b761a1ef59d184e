"""The admin's status page: is delivery healthy, at a glance, for staff only."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render

from .status import service_status


@staff_member_required
def status_page(request):
    context = {
        **admin.site.each_context(request),
        "title": "Service status",
        "status": service_status(),
        "window_minutes": round(settings.STATUS_WINDOW_SECONDS / 60, 1),
        "report_seconds": settings.STATUS_REPORT_SECONDS,
    }
    return render(request, "admin/realtime_status.html", context)
