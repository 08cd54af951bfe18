#!/usr/bin/env python
"""manage.py of the benchmark's tiny project; BENCH_SYSTEM picks the queue system."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
