"""Session-wide fixtures. The Label Studio server lives in labelstudio_server.py (started only when
a test asks for `labelstudio`)."""

from labelstudio_server import labelstudio  # noqa: F401 - a fixture, found by name
