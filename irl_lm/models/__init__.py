"""Flax models (T5, GPT-2, Llama), the ILQL value heads, and Hugging Face weight I/O."""
from irl_lm.models.config import PRESETS, ModelConfig, preset
from irl_lm.models.decoder import Decoder
from irl_lm.models.factory import (AuxHeads, aux_heads_init_fn, build_model, dummy_batch,
                                   init_params, param_init_fn,
                                   param_logical_specs, param_shardings)
from irl_lm.models.heads import (AUX_HEADS, HEADS, Q_HEADS, VALUE_TRUNK, ModelOutput,
                                  ScalarHead, TokenHead, ValueHeads,
                                  apply_heads, apply_q_heads, q_heads, trunk_params, trunks)
from irl_lm.models.hf_io import from_pretrained, save_pretrained
from irl_lm.models import lora
from irl_lm.models.t5 import T5

__all__ = [
    "AUX_HEADS", "AuxHeads", "PRESETS", "ModelConfig", "ScalarHead", "TokenHead",
    "aux_heads_init_fn", "preset", "Decoder", "T5", "ModelOutput", "build_model",
    "dummy_batch", "init_params", "param_init_fn", "param_logical_specs", "param_shardings", "HEADS", "Q_HEADS",
    "VALUE_TRUNK", "ValueHeads", "apply_heads", "apply_q_heads", "q_heads", "trunk_params", "trunks",
    "from_pretrained", "save_pretrained", "lora",
]
