"""Orchestration: handlers call these; they call storage and integrations."""
