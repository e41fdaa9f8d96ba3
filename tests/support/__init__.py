"""Shared test support: builders of domain objects used across the test suites."""
