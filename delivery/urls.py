"""REST routes of the delivery app."""

urlpatterns = []
