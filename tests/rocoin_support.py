"""Test support for RoCoIn: the digits zoo's profiles as numbers (no QEMU, no zoo export) and a briefly
distilled digits RoCoIn model on the shipped 6-device fleet, planned with those profiles.

The memory figures are what the code generator reported for the zoo at 12 outputs (docs/rocoin.md);
the instruction counts are round numbers near the measured ones (QEMU, about the same on the three boards). With the shipped fleet they give the
same plan as the measured zoo: 3 groups of 2, 'medium' on the Cortex-M55 pair, 'small' on the
Cortex-M4 pair (8 KiB of flash for weights), 'tiny' on the RISC-V pair (4 KiB).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinysplit.methods.rocoin.zoo import StudentProfile

BOARDS = ("qemu-mps2-an386", "qemu-mps3-an547", "qemu-riscv32-virt")
# name: (const_bytes, arena_bytes, instructions per inference)
ZOO_FIGURES = {"tiny": (2_172, 384, 140_000), "small": (5_032, 1_024, 460_000), "medium": (22_268, 2_144, 1_800_000)}


def digits_zoo_profiles(output_bytes: int = 12) -> tuple[StudentProfile, ...]:
    return tuple(StudentProfile(name, f"{name}.tflite", "0" * 64, const, arena, 64, output_bytes,
                                tuple((b, n) for b in BOARDS))
                 for name, (const, arena, n) in ZOO_FIGURES.items())


@dataclass
class TrainedRocoin:
    task: object  # pipeline.TeacherTask
    targets: object  # distill.TeacherTargets
    plan: object  # plan.Plan
    net: object  # students.StudentNetwork
    log: object  # distill.TrainLog


def train_digits_rocoin(teacher_epochs: int = 6, epochs: int = 8, finetune_epochs: int = 2) -> TrainedRocoin:
    """A seeded, brief digits RoCoIn model (a few seconds), single-threaded for reproducible sums."""
    import torch

    from tinysplit.methods.rocoin.command import default_fleet
    from tinysplit.methods.rocoin.distill import DistillConfig, teacher_targets, train_students
    from tinysplit.methods.rocoin.fleet import load_fleet
    from tinysplit.methods.rocoin.pipeline import build_network, digits_task
    from tinysplit.methods.rocoin.plan import PlanSettings
    from tinysplit.methods.rocoin.planner import make_plan

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = digits_task(teacher_epochs)
        activations = teacher_targets(task.logits_and_maps, task.x_train).activations
        plan = make_plan(load_fleet(default_fleet()), activations, digits_zoo_profiles(), PlanSettings(0.25, 0.25, 0))
        targets = teacher_targets(task.logits_and_maps, task.x_train, plan.partitions)
        archs = [next(g.student for g in plan.groups if g.partition == k) for k in range(len(plan.partitions))]
        net = build_network(archs, plan.partitions, len(task.classes), 0)
        log = train_students(net, task.x_train, task.y_train, targets,
                             DistillConfig(epochs=epochs, finetune_epochs=finetune_epochs))
    finally:
        torch.set_num_threads(threads)
    return TrainedRocoin(task, targets, plan, net, log)
