"""NAIR (papers/nair.md): importance-ordered channel slices, zero padding, one tail.

- ``order``: channel importance, the order baked into the weights, re-tuning (torch)
- ``clio``: the CLIO-style progressive comparison (torch)
- ``evaluate``: accuracy vs units and link latency per variant, as deployed (torch, export)
- ``variants``: variant names (light)
- ``slices``: the slice plan and the layout of units on the wire (numpy)
- ``devicesim``: the frames a device sends (the reference for the C app; simulated devices)
- ``reference``: the Python reference pipeline's labels at each budget
- ``command``: the ``nair-eval`` CLI verb

This file imports nothing heavy: a host-only install reads the slice plan from here.
"""
