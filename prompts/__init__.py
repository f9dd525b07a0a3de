"""Prompt files, shipped inside the package as ``assistant.prompts`` (read with importlib.resources)."""
