"""Configs: Python files whose ``get_config(variant)`` returns an ``ml_collections.ConfigDict``."""
