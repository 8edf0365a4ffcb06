"""model.py files copied into generated Triton repositories (run inside Triton's Python backend)."""
