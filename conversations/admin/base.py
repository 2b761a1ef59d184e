"""What the conversation admins share: service errors shown as admin messages."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect

from core.errors import InvalidInput, ServiceError


class ServiceErrorsAsMessagesMixin:
    """Show a service's refusal (a version conflict, a vanished member) as an
    admin error message instead of a server error.

    The admin's change and delete views write in one transaction; the error is
    caught outside it, so everything the request did is rolled back, and the
    page is loaded again showing the current state, e.g. a message's newer
    version after a conflicting edit.
    """

    def changeform_view(self, request, *args, **kwargs):
        return self._reporting_service_errors(super().changeform_view, request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._reporting_service_errors(super().delete_view, request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._reporting_service_errors(super().changelist_view, request, *args, **kwargs)

    def _reporting_service_errors(self, view, request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ServiceError as error:
            self.message_user(request, describe_service_error(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def describe_service_error(error: ServiceError) -> str:
    text = f"{error.message} Nothing was saved."
    if "current_version" in error.details:
        text += f" The message is now at version {error.details['current_version']}; this page shows it."
    return text


def as_validation_error(clean, value):
    """Run one of the services' input rules as a form field's validation."""
    try:
        return clean(value)
    except InvalidInput as error:
        raise ValidationError(error.message) from error


# Conversations and members
