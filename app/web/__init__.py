"""The web pages (templates, static files and their blueprint)."""
