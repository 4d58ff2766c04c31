"""The money and the jobs, persisted. Imports nothing from ``bot``."""
