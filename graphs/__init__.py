"""exaone4.graphs: pure ONNX-to-ONNX passes, one a file; they import nothing from exaone4.exporter."""
