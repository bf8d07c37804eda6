"""Presentation: terminal tables, the Markdown report and the plots. docs/architecture.md."""
