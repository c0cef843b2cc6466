"""Jinja templates and the portable C runtime for generated firmware projects."""
