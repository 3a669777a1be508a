"""The WSGI entry point gunicorn loads: ``falconproc.wsgi:app``."""
from __future__ import annotations

from falconproc.web.app import create_app
from falconproc.web.keepalive import CloseUnreadBodies
from falconproc.wiring import Components

_components = Components()
_settings = _components.settings
app = CloseUnreadBodies(create_app(_components), linger_seconds=_settings.linger_seconds,
                        linger_max_bytes=_settings.linger_max_bytes, max_lingering=_settings.web_threads // 8)
