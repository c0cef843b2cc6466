"""The split-computing methods, one subpackage each, and the registry every stage keys on.

``METHODS`` names every method a bundle's ``manifest.method`` may hold. Each stage has its own small
registry keyed by the same names (a test asserts that they agree):

- methods (here): training, evaluation and the method's CLI verbs, ``tinysplit/methods/<name>/``;
- export/contract: the method data schema, ``tinysplit/schemas/method_data/<name>.schema.json``,
  checked at export time and on every manifest load;
- firmware: the device app, ``tinysplit.firmware.apps.APPS`` (``firmware_templates/app/<name>/``);
- host: the assembler, ``tinysplit.host_server.assemblers.ASSEMBLERS``.

This module is light (no torch, no numpy): the CLI and the manifest read it in every install.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinysplit.errors import InputError


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    # Module (imported lazily) whose COMMANDS dict holds the method's CLI verbs: name -> (add_parser, run).
    commands: str | None = None
    # False for a bundle that runs whole on the device (no host assembler, no split app).
    split: bool = True


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("plain", "no split method: device models with outputs used as they are (a whole classifier on "
                    "the device, or a head whose output is checked in HIL)", split=False),
    Method("nair", "NAIR: importance-ordered channel slices of the head's output, zero-filled on the host, "
                   "one tail", commands="tinysplit.methods.nair.command"),
    Method("rebel", "ReBEL: Head1 + a Gaussian-mixture early classifier on the device; confident samples get an "
                    "early label there, the others send the latent z to Head2 + Tail on the host",
           commands="tinysplit.methods.rebel.command"),
    Method("rocoin", "RoCoIn: knowledge-distilled students, one per partition of the teacher's final-conv filters, "
                     "replicated over device groups; the host takes the first portion per partition, zero-fills "
                     "the missing ones at the deadline and aggregates them with one fully connected layer",
           commands="tinysplit.methods.rocoin.command"),
    Method("adaptive_resnet", "Adaptive ResNet: a residual head on the device whose identity blocks are skipped by a "
                              "runtime mask that a host planner sets from the devices' resources; one tail on the host",
           commands="tinysplit.methods.adaptive_resnet.command"),
)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise InputError(f"unknown method '{name}'; known methods: {', '.join(METHODS)}") from None
