"""Config parsing: the three ways to name layer kinds, both RoPE spellings, and refusals."""

from __future__ import annotations

import pytest

from exaone4.exporter.config import LayerKind, parse_config
from exaone4.exporter.errors import InputError

G, L = LayerKind.GLOBAL, LayerKind.SLIDING


def raw(**overrides):
    base = {
        "model_type": "exaone4",
        "vocab_size": 100,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "sliding_window": 8,
        "rope_theta": 10000.0,
    }
    base.update(overrides)
    return base


def test_defaults_and_derived_fields():
    config = parse_config(raw())
    assert config.head_dim == 16 and config.kv_groups == 2
    assert config.layer_kinds == (L, L, L, G)  # sliding_window_pattern defaults to 4
    assert [spec.window for spec in config.layers] == [8, 8, 8, None]
    assert [spec.rope for spec in config.layers] == [True, True, True, False]  # trap 1: global is NoPE


def test_explicit_layer_types_win_over_pattern():
    config = parse_config(raw(layer_types=["full_attention", "sliding_attention"] * 2, sliding_window_pattern=4))
    assert config.layer_kinds == (G, L, G, L)


def test_int_pattern_every_pth_layer_is_global():
    config = parse_config(raw(num_hidden_layers=6, sliding_window_pattern=3))
    assert config.layer_kinds == (L, L, G, L, L, G)


def test_string_pattern_repeats_and_last_layer_is_global():
    """Trap 3: transformers crashes on the string form; we parse it."""
    config = parse_config(raw(num_hidden_layers=6, sliding_window_pattern="LLLG"))
    assert config.layer_kinds == (L, L, L, G, L, G)


def test_no_window_means_every_layer_global_and_rotated():
    """Trap 1: the 1.2B has sliding_window null; all layers global AND RoPE."""
    config = parse_config(raw(sliding_window=None, sliding_window_pattern="LLLG"))
    assert config.layer_kinds == (G, G, G, G)
    assert all(spec.rope and spec.window is None for spec in config.layers)


def test_v4_rope_scaling_llama3():
    config = parse_config(
        raw(
            rope_theta=1_000_000.0,
            rope_scaling={"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192},
        )
    )
    assert (config.rope.kind, config.rope.theta, config.rope.factor) == ("llama3", 1e6, 16.0)
    assert config.rope.original_max_position_embeddings == 8192


def test_v5_rope_parameters():
    config = parse_config(raw(rope_parameters={"rope_type": "default", "rope_theta": 5e5}))
    assert (config.rope.kind, config.rope.theta) == ("default", 5e5)


def test_explicit_head_dim_and_eos_list():
    config = parse_config(raw(head_dim=24, eos_token_id=[2, 7]))
    assert config.head_dim == 24 and config.eos_token_ids == (2, 7)


def test_auto_map_is_ignored_not_imported():
    config = parse_config(raw(auto_map={"AutoModelForCausalLM": "evil.Model"}))
    assert config.num_layers == 4


@pytest.mark.hardening("config.json (library)", expect="InputError naming the file or field")
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"model_type": "llama"}, "model_type"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type"),
        ({"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4}}, "rope_type"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_hidden_layers": -2}, "num_hidden_layers"),
        ({"hidden_size": "64"}, "hidden_size"),
        ({"num_attention_heads": 5}, "num_attention_heads"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"layer_types": ["full_attention"] * 3}, "layer_types"),
        ({"layer_types": ["full_attention"] * 3 + ["chunked"]}, "layer_types[3]"),
        ({"sliding_window_pattern": "LXG"}, "sliding_window_pattern"),
        ({"sliding_window": -1}, "sliding_window"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_theta": "big"}, "rope_theta"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
        ({"head_dim": 15}, "head_dim"),
    ],
)
def test_invalid_configs_name_the_field(overrides, field):
    with pytest.raises(InputError) as info:
        parse_config(raw(**overrides))
    assert field in str(info.value)


@pytest.mark.hardening("config.json (library)", tried="required field missing", expect="InputError naming the file or field")
def test_missing_field_is_named():
    broken = raw()
    del broken["vocab_size"]
    with pytest.raises(InputError, match="vocab_size: is missing"):
        parse_config(broken)


def test_parameter_count_matches_real_1p2b_shape():
    """EXAONE-4.0-1.2B: 1.28B parameters with tied embeddings."""
    config = parse_config(
        raw(vocab_size=102400, hidden_size=2048, intermediate_size=4096, num_hidden_layers=30,
            num_attention_heads=32, num_key_value_heads=8, head_dim=64, sliding_window=None,
            tie_word_embeddings=True)
    )
    assert 1.2e9 < config.parameter_count() < 1.35e9
