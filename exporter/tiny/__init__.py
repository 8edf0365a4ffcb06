"""The bundled tiny EXAONE 4 checkpoint (trained by scripts/train_tiny.py), and its held-out text.

`HELDOUT_TEXT` is the default text of `verify`'s perplexity scenario: CPython
3.11.7's `Lib/encodings/punycode.py`, verbatim (the interpreter the model was
trained with, training.json). scripts/tiny_tokenizer.py holds out every stdlib
file whose path hashes below a threshold (`_is_heldout`); this is one of them,
so neither the model nor its tokenizer saw it (tests/test_perplexity.py checks
the rule). It is shipped rather than read from the running Python's stdlib so
the scenario scores the same tokens on every Python version and on installs
without stdlib sources; the file is under the PSF License, whose text ships
beside it (heldout-LICENSE.txt, CPython's LICENSE.txt) as that license asks.
"""

from pathlib import Path

from ..contract import HELDOUT_TEXT_FILE

TINY_DIR = Path(__file__).resolve().parent
BUNDLED_NAME = "bundled:tiny"
HELDOUT_TEXT = TINY_DIR / HELDOUT_TEXT_FILE
HELDOUT_SOURCE = "the bundled model's held-out text: CPython 3.11.7 Lib/encodings/punycode.py"
