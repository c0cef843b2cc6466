"""RoCoIn (papers/rocoin.md): knowledge-distilled students replicated over device groups, the host
taking the first portion per partition.

Planning (sec. IV, Algorithm 1; docs/rocoin.md "Planning"):

- ``fleet``: the devices as data (a fleet file: board, link rate, outage probability per device),
  each device's compute (clock) and memory for a student (the board's, less the firmware's reserve)
- ``partition``: the teacher's final-conv filter graph and its normalized cut into K parts (numpy, scikit-learn)
- ``grouping``: follow-the-leader device grouping with d_th and p_th (numpy)
- ``zoo``: the student zoo: each int8 .tflite's flash and arena from the code generator and its
  instructions per inference measured in QEMU per board, cached
- ``assign``: eq. (5)'s weights and the Kuhn-Munkres matching of groups and partitions (scipy)
- ``latency``: compute and link time of a portion, a group's first arrival
- ``plan``: the Plan, its JSON (schema-checked), its tables; ``planner``: Algorithm 1 end to end
- ``command``: ``tinysplit rocoin-plan``
- ``validate``: the schema checks behind the fleet and the plan

This file imports nothing heavy.
"""
