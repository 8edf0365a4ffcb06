"""The bundled tiny EXAONE 4 checkpoint (trained by scripts/train_tiny.py)."""

from pathlib import Path

TINY_DIR = Path(__file__).resolve().parent
BUNDLED_NAME = "bundled:tiny"
