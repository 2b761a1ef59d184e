"""REST routes of the devices app."""

urlpatterns = []
