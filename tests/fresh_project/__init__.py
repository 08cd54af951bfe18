"""A project built from the docs alone, with none of the test settings' help.

``settings.py`` has what README.md, docs/getting-started.md and docs/api.md tell a new project to
write (its ``CACHES`` and ``TASKS`` are read from docs/api.md itself), and no ``REST_FRAMEWORK``
or ``LOGGING``. ``scenarios.py`` walks it as a newcomer would; ``tests/test_fresh_project.py`` runs
it in a process of its own, since DRF and drf-spectacular read their settings at import time.
"""
