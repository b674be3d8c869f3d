"""Sound sources of the offline demo test set (see catalog.py)."""

from testsets.demo_sources.catalog import SOURCES_VERSION, DemoSource, load_demo_sources

__all__ = ["SOURCES_VERSION", "DemoSource", "load_demo_sources"]
