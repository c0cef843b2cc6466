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
- ``validate``: the schema checks behind the fleet and the plan

Students, bundle, host side (docs/rocoin.md):

- ``students``: the student zoos (digits, CIFAR-10), the aggregator, the network of students (torch)
- ``distill``: CE + KD + activation transfer, jointly through the aggregator, optionally on augmented
  batches; drop-out fine-tuning of the aggregator (torch)
- ``export``: the ``rocoin`` bundle (``export_rocoin``) and the zoo's int8 .tflite files
- ``bundle``: a rocoin bundle's deployment view, ``plan_for(manifest)`` (numpy)
- ``devicesim``: the ROCOIN_PORTION frames and HELLO a device sends (the reference for the C app)
- ``reference``: the labels for the partitions that arrived (TFLite Micro, ONNX Runtime)
- ``pipeline``: teacher -> plan -> students -> bundle for a ``TeacherTask`` (the digits example's)
- ``evaluate``: accuracy against failed devices, float and int8: RoCoIn, NoNN-style baselines, the teacher
- ``command``: ``tinysplit rocoin-plan``, ``tinysplit rocoin-export``
- ``fleets/``: fleet files that ship with tinysplit (``digits6.yaml``; ``cifar8.yaml`` for the CIFAR-10
  benchmark)

This file imports nothing heavy.
"""
