# setuptools needs setup.py for two things pyproject.toml cannot say: the cffi module
# (compiled against the system libbpf at install time) and shipping the repo's top-level
# bpf/ folder inside the package as mapbench.bpf.
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["mapbench", "mapbench.*"]), "mapbench.bpf"],
    package_dir={"mapbench.bpf": "bpf"},
    package_data={"mapbench.bpf": ["*.c", "*.h"], "mapbench.binding": ["*.c"], "mapbench.measure.engines": ["*.c"]},
    cffi_modules=["mapbench/binding/_build_libbpf.py:ffibuilder"],
)
