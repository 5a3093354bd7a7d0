#!/usr/bin/env python3
"""django-scim2 behind the smallest Django project it needs: the second SCIM server of the testbed.

Nothing here changes django-scim2's SCIM behaviour: the models are the ones its default adapters
expect, and the only code of ours is a bearer-token check. Settings come from the environment:
DJANGO_SCIM_DB (SQLite file), DJANGO_SCIM_NETLOC (127.0.0.1:PORT), DJANGO_SCIM_TOKEN_FILE.
"""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenant.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
