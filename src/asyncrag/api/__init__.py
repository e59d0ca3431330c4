"""The HTTP API and web page (`asyncrag serve`)."""

from asyncrag.api.app import ServeOptions, create_app

__all__ = ["ServeOptions", "create_app"]
