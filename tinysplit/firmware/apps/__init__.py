"""The firmware stage's registry: one device application per name, each a template folder
``firmware_templates/app/<name>/`` (its ``main.c.j2``) plus what the project generator needs to know.

Test apps (``hil``, ``exit``) run a model without the wire protocol. Method apps (``method`` set) are
the device side of a split-computing method, on top of the generic device runtime in C; their
Python half (``module``) turns a bundle manifest into the app's configuration, an ``AppConfig``.
A test asserts that every split method in ``tinysplit.methods.METHODS`` has exactly one app here.

Light: no Jinja, no numpy, so that ``tinysplit firmware --help`` works in every install.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from tinysplit.errors import InputError

if TYPE_CHECKING:
    from tinysplit.boards import Board
    from tinysplit.manifest import Manifest
    from tinysplit.modelsrc import ModelSources

TEST_APP_RAM = 256  # static RAM of a test app beyond the model's arena (measured < 64 B)


class AppConfig(Protocol):
    """What a method app's configuration gives the project generator."""

    transport: str  # "uart" | "udp": how the device's frames leave (the project adds the NIC driver)
    device_id: int
    bundle_id: int

    def check(self, board: "Board", model: "ModelSources") -> None:
        """InputError unless this configuration fits the model and the board."""

    def context(self, board: "Board") -> Any:
        """The frozen values the app's templates read under the app's name (numbers and C literals)."""

    def meta(self) -> dict[str, Any]:
        """The configuration as JSON for project.json."""


@dataclass(frozen=True)
class App:
    name: str
    summary: str
    method: str | None = None  # the split method whose device side this app is; None: a test app
    ram_bytes: int = TEST_APP_RAM  # static RAM beyond the model's arena, for the fit check before compiling
    runtime_files: tuple[str, ...] = ()  # hand-written C copied from firmware_templates/runtime into src/
    templates: Mapping[str, str] = field(default_factory=dict)  # extra output path -> template
    module: str | None = None  # Python half of a method app: config_from_manifest(manifest, **options)
    skippable: bool = False  # the app runs <model>_invoke_skip: the model is generated with skippable blocks
    profile: bool = False  # the model is generated with profiling marks; the project compiles with -DTS_PROFILE

    @property
    def main_template(self) -> str:
        return f"app/{self.name}/main.c.j2"

    def config_from_manifest(self, manifest: "Manifest", **options: Any) -> AppConfig:
        if self.module is None:
            raise InputError(f"app '{self.name}' takes no configuration from a bundle")
        return importlib.import_module(self.module).config_from_manifest(manifest, **options)


# A method app runs on the generic device runtime (ts_device: frames in, HELLO/STATS/CONTROL, INPUT
# reassembly, main loop, UART/UDP out) and the wire codec (ts_wire).
_DEVICE_RUNTIME = ("ts_device.c", "ts_device.h", "ts_wire.c", "ts_wire.h")

APPS: dict[str, App] = {a.name: a for a in (
    App("hil", "test app: raw HIL protocol (TSHIL1), inputs in, outputs and instruction counts out"),
    App("exit", "test app: runs the model once and exits with a given status"),
    App("profile", "test app: TSHIL1 plus instruction counts after every kernel call ('tinysplit profile')",
        profile=True),
    # nair: the runtime's COBS receive buffer, frame and COBS transmit buffers, the Ethernet frame;
    # measured ~3.3 KiB, ~4.4 KiB with UDP
    App("nair", "NAIR: streams importance-ordered slices of the model's output under a budget",
        method="nair", ram_bytes=5 * 1024, runtime_files=_DEVICE_RUNTIME, templates={"src/net.h": "net/net.h.j2"},
        module="tinysplit.firmware.apps.nair"),
    # rebel: the same runtime buffers as nair (its own state is one int)
    App("rebel", "ReBEL: the device serves confident samples (EARLY_LABEL), sends the latent of the others",
        method="rebel", ram_bytes=5 * 1024, runtime_files=_DEVICE_RUNTIME, templates={"src/net.h": "net/net.h.j2"},
        module="tinysplit.firmware.apps.rebel"),
    # rocoin: the same runtime buffers (its own state is the 16-byte provisioning record, in flash)
    App("rocoin", "RoCoIn: runs the device's student on each broadcast input, sends its partition's portion",
        method="rocoin", ram_bytes=5 * 1024, runtime_files=_DEVICE_RUNTIME, templates={"src/net.h": "net/net.h.j2"},
        module="tinysplit.firmware.apps.rocoin"),
    # adaptive_resnet: the same runtime buffers (its own state is the skip mask)
    App("adaptive_resnet", "Adaptive ResNet: runs the head with the skip mask the host set (CONTROL key 4), sends "
                           "the output with that mask and the inference's instruction count",
        method="adaptive_resnet", ram_bytes=5 * 1024, runtime_files=_DEVICE_RUNTIME,
        templates={"src/net.h": "net/net.h.j2"}, module="tinysplit.firmware.apps.adaptive_resnet", skippable=True),
)}


def get_app(name: str) -> App:
    try:
        return APPS[name]
    except KeyError:
        raise InputError(f"unknown app '{name}'; known apps: {', '.join(APPS)}") from None


def app_for_method(method: str) -> App:
    """The device app of a split method (InputError for a method that has none, e.g. 'plain')."""
    for app in APPS.values():
        if app.method == method:
            return app
    apps = ", ".join(f"{a.name} ({a.method})" for a in APPS.values() if a.method)
    raise InputError(f"method '{method}' has no device application that speaks the wire protocol (method apps: "
                     f"{apps}); a '{method}' bundle runs with the test apps: tinysplit hil without --e2e, or "
                     "tinysplit firmware --app hil|exit")
