"""`genai_config.json`: what onnxruntime-genai needs to load an `ort` export and generate.

Our IO contract is the one onnxruntime-genai expects of a decoder (input_ids,
attention_mask, position_ids, past_key_values.%d.key/value -> logits,
present.%d.key/value), with a cache that grows by concatenation or, for
`--kv-cache static`, one in-place buffer per layer (genai's shared-buffer mode), so the config
only names the tensors and the shapes. genai has no EXAONE 4 model type; its
generic decoder ("llama") drives the graph, since the attention pattern lives
inside our graph, not in genai.
"""

from __future__ import annotations

from .config import Exaone4Config
from .contract import ATTENTION_MASK, INPUT_IDS, LOGITS, MODEL_FILE, POSITION_IDS, past_name, present_name


def genai_config(config: Exaone4Config, shared_buffer_length: int | None = None) -> dict:
    """The config for a growing cache, or (`shared_buffer_length`) for an in-place one of that many slots."""
    context = shared_buffer_length or config.max_position_embeddings
    return {
        "model": {
            "type": "llama",
            "bos_token_id": config.bos_token_id if config.bos_token_id is not None else 1,
            "eos_token_id": list(config.eos_token_ids),
            "pad_token_id": config.pad_token_id if config.pad_token_id is not None else 0,
            "vocab_size": config.vocab_size,
            "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": MODEL_FILE,
                "head_size": config.head_dim,
                "hidden_size": config.hidden_size,
                "num_attention_heads": config.num_heads,
                "num_key_value_heads": config.num_kv_heads,
                "num_hidden_layers": config.num_layers,
                "inputs": {
                    "input_ids": INPUT_IDS,
                    "attention_mask": ATTENTION_MASK,
                    "position_ids": POSITION_IDS,
                    "past_key_names": past_name("%d", "key"),  # genai's printf pattern
                    "past_value_names": past_name("%d", "value"),
                },
                "outputs": {
                    "logits": LOGITS,
                    "present_key_names": present_name("%d", "key"),
                    "present_value_names": present_name("%d", "value"),
                },
            },
        },
        "search": {
            "do_sample": False,
            "max_length": context,
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            # a growing cache's presents are concat(past, new); an in-place one is one buffer for both
            "past_present_share_buffer": shared_buffer_length is not None,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
            "length_penalty": 1.0,
            "early_stopping": True,
        },
    }
