"""HTTP API (FastAPI): one router module per area, assembled by :func:`ciyuan.api.app.create_app`."""
