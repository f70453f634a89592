"""Attacks on ``orga-ai serve`` and the framework routes from an anonymous client (see attacks.py)."""
