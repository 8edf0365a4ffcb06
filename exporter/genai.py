"""`genai_config.json`: what onnxruntime-genai needs to load an `ort` export and generate.

Our IO contract is the one onnxruntime-genai expects of a decoder (input_ids,
attention_mask, position_ids, past_key_values.%d.key/value -> logits,
present.%d.key/value), with a cache that grows by concatenation, so the config
only names the tensors and the shapes. genai has no EXAONE 4 model type; its
generic decoder ("llama") drives the graph, since the attention pattern lives
inside our graph, not in genai.
"""

from __future__ import annotations


def genai_config(manifest: dict, eos_token_ids: list[int], pad_token_id: int | None) -> dict:
    config = manifest["config"]
    context = config["max_position_embeddings"]
    return {
        "model": {
            "type": "llama",
            "bos_token_id": 1,
            "eos_token_id": eos_token_ids,
            "pad_token_id": pad_token_id if pad_token_id is not None else 0,
            "vocab_size": config["vocab_size"],
            "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": config["head_dim"],
                "hidden_size": config["hidden_size"],
                "num_attention_heads": config["num_heads"],
                "num_key_value_heads": config["num_kv_heads"],
                "num_hidden_layers": config["num_layers"],
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "do_sample": False,
            "max_length": context,
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,  # our presents are concat(past, new), not a fixed buffer
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
            "length_penalty": 1.0,
            "early_stopping": True,
        },
    }
