# setuptools needs setup.py for two things pyproject.toml cannot say: the cffi module
# (compiled against the system libbpf at install time) and shipping the repo's top-level
# bpf/ folder inside the package as mapbench.bpf.
from setuptools import setup

setup(
    packages=["mapbench", "mapbench.engines", "mapbench.bpf"],
    package_dir={"mapbench.bpf": "bpf"},
    package_data={"mapbench.bpf": ["*.c", "*.h"], "mapbench": ["*.c"]},
    cffi_modules=["mapbench/_build_libbpf.py:ffibuilder"],
)
