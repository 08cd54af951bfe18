#!/usr/bin/env python
"""The chaos project's manage.py: ``runworkers`` and ``migrate`` for ``bench/chaos.py``."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chaosproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
