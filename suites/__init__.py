"""Declarative suite files (TOML), shipped as package data."""
