"""The HTTP API and web page (`asyncrag serve`)."""

from asyncrag.api.app import create_app
from asyncrag.api.deps import ServeOptions

__all__ = ["ServeOptions", "create_app"]
