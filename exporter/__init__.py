"""Exporter: trained PyTorch device pieces -> verified int8 TFLite models in a bundle directory."""

from tinysplit.exporter.bundle import ExportResult, export_bundle
from tinysplit.exporter.spec import DevicePiece, ExportSpec, TailPiece

__all__ = ["DevicePiece", "ExportResult", "ExportSpec", "TailPiece", "export_bundle"]
