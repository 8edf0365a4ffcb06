"""exaone4.exporter: checkpoint loading, the reference model, export, runners, parity, TensorRT and Triton."""
