"""Shared test support: domain builders, fakes, and an in-process AWS holding the stack."""
