"""REST routes of the conversations app."""

urlpatterns = []
