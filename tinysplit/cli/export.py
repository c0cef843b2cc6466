"""``tinysplit export`` and ``tinysplit inspect``: make a bundle, look into one."""

from __future__ import annotations

import json

from tinysplit.console import Progress, emit_json
from tinysplit.errors import InputError

# tinysplit.examples.zoo.HEADS, named here so that `--help` does not import torch
ZOO = ("mobilenetv3", "encoder-decoder", "detector")


# --- export ---------------------------------------------------------------------------------------

def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export trained PyTorch device pieces to a verified int8 bundle",
                       description="Convert device pieces (torch -> ONNX -> TFLite int8), export host tails "
                                   "to ONNX, verify (int8 vs float, TFLite Micro vs TFLite reference, "
                                   "measured arena) and write a bundle directory with manifest.json and "
                                   "report.json.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--example", choices=["digits", "digits-classifier", "mobilenet", *ZOO],
                     help="a built-in example, no download: digits (trains in seconds; head on the device, tail "
                          "on the host), digits-classifier (the whole network on the device), mobilenet (a "
                          "CIFAR-shaped MobileNetV2-style head with seeded weights, synthetic data); "
                          "mobilenetv3 (Hardswish, squeeze-excitation), encoder-decoder (transposed convolution, "
                          "bilinear resize), detector (leaky ReLU, nearest upsampling, concatenation): seeded "
                          "weights, synthetic data")
    src.add_argument("--spec", metavar="FILE.py[:FUNC]",
                     help="a Python file or module whose function (default: build) returns an ExportSpec")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory to create (must not exist)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists (only once the new bundle is whole)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs for --example (default 30)")
    p.add_argument("--json", action="store_true", help="print the report's summary as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _run_export(args) -> int:
    from pathlib import Path

    from tinysplit.exporter.bundle import check_out_dir

    progress = Progress(args.quiet)
    check_out_dir(Path(args.out).resolve(), args.force)  # before any training or conversion
    if args.example == "mobilenet":
        from tinysplit.examples.mobilenet import mobilenet_spec

        progress("building the MobileNetV2-style example (seeded weights, synthetic 32x32x3 data)")
        spec, _ = mobilenet_spec()
    elif args.example in ZOO:
        from tinysplit.examples.zoo import zoo_spec

        progress(f"building the '{args.example}' example (seeded weights, synthetic 32x32x3 data)")
        spec, _ = zoo_spec(args.example)
    elif args.example:
        if args.epochs < 1:
            raise InputError("--epochs must be at least 1")
        progress(f"training the '{args.example}' example ({args.epochs} epochs)")
        from tinysplit.examples.digits import digits_spec

        spec, trained = digits_spec(args.example, epochs=args.epochs)
        progress(f"trained: float accuracy on the held-out split {100 * trained.heldout_accuracy:.2f}%")
    else:
        from tinysplit.specfile import load_export_spec

        progress(f"loading export spec from {args.spec}")
        spec = load_export_spec(args.spec)
    from tinysplit.exporter import export_bundle

    result = export_bundle(spec, args.out, force=args.force, progress=progress)
    rep = result.report
    if args.json:
        emit_json({"bundle": str(result.bundle_dir), "bundle_id": result.manifest.bundle_id,
                   **{k: rep[k] for k in ("int8", "tflm", "model", "ops")}})
    elif not args.quiet:
        print((result.bundle_dir / "report.txt").read_text(), end="")
        print(f"bundle written to {result.bundle_dir}")
    return 0


# --- inspect --------------------------------------------------------------------------------------

def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="validate a bundle and show its manifest and report",
                       description="Validate BUNDLE/manifest.json against its schema and the files' sha256, "
                                   "then print a summary (or the manifest and report as JSON).")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--json", action="store_true", help="print {manifest, report} as JSON")


def _run_inspect(args) -> int:
    from pathlib import Path

    from tinysplit.manifest import load_manifest

    m = load_manifest(args.bundle)
    rep_path = Path(args.bundle) / "report.json"
    rep = json.loads(rep_path.read_text()) if rep_path.is_file() else None
    if args.json:
        emit_json({"manifest": m.to_json(), "report": rep})
        return 0
    print(f"bundle '{m.name}' id {m.bundle_id}, method {m.method}, manifest v{m.version} "
          f"(tinysplit {m.tinysplit_version}), input NCHW {list(m.input.shape_nchw)}")
    for d in m.device_models:
        io = ", ".join(f"{t.name} {list(t.shape)} s={t.scale:.4g} zp={t.zero_point}" for t in (*d.inputs, *d.outputs))
        print(f"  device '{d.name}' ({d.kind}) {d.file}: {d.flash_bytes:,} B, arena {d.arena_bytes:,} B, "
              f"ops {' '.join(d.ops)}; {io}")
    for t in m.host_tails:
        print(f"  host tail '{t.name}' {t.file} <- {', '.join(t.consumes)}")
    report_txt = Path(args.bundle) / "report.txt"
    if report_txt.is_file():
        print(report_txt.read_text(), end="")
    return 0



# --- ops ------------------------------------------------------------------------------------------

def _add_ops(sub) -> None:
    p = sub.add_parser("ops", help="list the int8 TFLite ops the code generator supports, with their constraints",
                       description="The single op table the exporter's check, the code generator and this "
                                   "command share (tinysplit.exporter.ops.OPS): each op with the constraints its "
                                   "lowering enforces. A model with any other op is refused (exit 3) naming it.")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print [{op, constraints}] as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/ops.md is this)")


def ops_markdown() -> str:
    """docs/ops.md: the op table as Markdown (a test keeps the file equal to this)."""
    from tinysplit.exporter.ops import OPS

    rows = "\n".join(f"| {op} | {OPS[op].replace('|', '/')} |" for op in sorted(OPS))
    return ("# Supported ops\n\n"
            f"The {len(OPS)} int8 TFLite ops the code generator lowers, bit-exact with TFLite Micro's reference "
            "kernels, with the\nconstraints each lowering enforces. Generated by `tinysplit ops --markdown` from "
            "`exporter/ops.py: OPS`,\nthe one list the exporter's check, the code generator and `tinysplit ops` "
            "share; kernels and\ntests per op group: [firmware.md](firmware.md).\n\n"
            f"| op | constraints |\n|---|---|\n{rows}\n")


def _run_ops(args) -> int:
    import textwrap

    from tinysplit.exporter.ops import OPS

    if args.json:
        emit_json([{"op": op, "constraints": OPS[op]} for op in sorted(OPS)])
        return 0
    if args.markdown:
        print(ops_markdown(), end="")
        return 0
    width = max(map(len, OPS)) + 2
    print(f"{len(OPS)} int8 ops (bit-exact with TFLite Micro's reference kernels):")
    for op in sorted(OPS):
        lines = textwrap.wrap(OPS[op], width=max(40, 110 - width)) or [""]
        print(f"  {op:{width}}{lines[0]}")
        for line in lines[1:]:
            print(f"  {'':{width}}{line}")
    return 0


COMMANDS = {
    "export": (_add_export, _run_export),
    "inspect": (_add_inspect, _run_inspect),
    "ops": (_add_ops, _run_ops),
}
