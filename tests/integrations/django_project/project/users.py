"""Create the test users (run through `manage.py shell -c`)."""

from django.contrib.auth.models import User

for name in ("alice", "bob"):
    User.objects.create_user(name, password=f"{name}-password")
