"""Benchmarks of the course: one script per chapter (see README.md)."""
