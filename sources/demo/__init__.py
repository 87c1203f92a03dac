"""The bundled offline demo outlets: ``DemoFeedServer`` serves ``stories.json`` over loopback HTTP."""

from sources.demo.server import DemoFeedServer

__all__ = ["DemoFeedServer"]
