"""The exchange in a browser: server-rendered pages (see ``ciyuan.web.routes`` and docs/web.md)."""
