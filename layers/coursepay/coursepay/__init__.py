"""Shared package of the course payments backend."""
