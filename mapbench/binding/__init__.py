"""The thin libbpf binding: the cffi module (_build_libbpf.py, _native.c) and libbpf.py,
where every fd is a context manager. docs/architecture.md."""
