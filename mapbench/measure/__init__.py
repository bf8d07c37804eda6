"""Measuring: the engine interface (engine.py), the runner that plans and runs every load
(runner.py), the engines, and what they build on. docs/architecture.md."""
