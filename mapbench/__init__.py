"""mapbench: what BPF map strategies cost on the running kernel."""

__version__ = "0.1.0"
