"""Shared test tooling: in-process and subprocess coordinators, signed clients, a faulty proxy."""
