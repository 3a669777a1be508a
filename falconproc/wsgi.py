"""The WSGI entry point gunicorn loads: ``falconproc.wsgi:app``."""
from __future__ import annotations

from falconproc.app import create_app

app = create_app()
