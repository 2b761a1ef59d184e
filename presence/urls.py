"""REST routes of the presence app."""

urlpatterns = []
