"""Firmware projects: render a C project for a board and a model, build it, run it in QEMU, talk to it."""
