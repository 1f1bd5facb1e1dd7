"""Exporting trained models to ONNX for the converter (needs the [train] extra)."""
