"""Question answering with citations over development-programme documents about Tajikistan."""

__version__ = "0.1.0"
