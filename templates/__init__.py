"""Jinja2 templates of symgrad's generated modules (shipped in the wheel as symgrad.templates)."""
