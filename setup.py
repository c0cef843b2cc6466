"""The one thing pyproject.toml cannot say: the repository's fixed top-level folders are mapped into
the one ``tinysplit`` package (``exporter/`` is ``tinysplit.exporter``, ...), and every subpackage
below them is found by setuptools' ``find_packages``, so a new subpackage cannot be left out of the
wheel. Everything else (metadata, extras, package data) is in pyproject.toml."""

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "tinysplit": "tinysplit",
    "tinysplit.exporter": "exporter",
    "tinysplit.host_server": "host_server",
    "tinysplit.boards": "boards",
    "tinysplit.firmware_templates": "firmware_templates",
}

setup(
    package_dir=PACKAGE_DIR,
    packages=sorted({p for pkg, folder in PACKAGE_DIR.items()
                     for p in (pkg, *(f"{pkg}.{sub}" for sub in find_packages(folder)))}),
)
