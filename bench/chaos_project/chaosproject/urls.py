"""No views: the chaos project only runs workers."""

urlpatterns: list = []
