"""The one chat path: tokenizer and chat template, stop tokens, sampling, streaming text, response parsing.

The CLI (`generate`) and the Triton generation models (exporter/triton_models/generate.py)
both use this package; `exaone4-export triton` copies it, with the modules it imports
(`SHIPPED_MODULES`), into the model repository, so the server runs this very code.
It needs numpy, tokenizers and jinja2, never torch.
"""

from .conversation import conversation, read_messages, read_tools
from .response import ParsedResponse, parse_response
from .sampling import Sampling, choose_token
from .stream import TextStream
from .tokenizer import END_OF_TURN, ChatTokenizer

# Modules of exaone4.exporter that the Triton generation models import, relative to exporter/
# (ort_runner and serving: the resident engine of a --kv-cache static export's repository).
SHIPPED_MODULES = ("__init__.py", "errors.py", "jsonfile.py", "contract.py", "session.py", "generate.py", "ort_runner.py",
                   "chat", "serving")

__all__ = [
    "END_OF_TURN",
    "SHIPPED_MODULES",
    "ChatTokenizer",
    "ParsedResponse",
    "Sampling",
    "TextStream",
    "choose_token",
    "conversation",
    "parse_response",
    "read_messages",
    "read_tools",
]
