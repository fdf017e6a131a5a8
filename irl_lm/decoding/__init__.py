"""Fast decoding: KV-cache greedy decoding, sampling, beam search and ILQL-guided sampling."""
from irl_lm.decoding.api import GenerateOutput, generate
from irl_lm.decoding.config import default_config, generate_kwargs
from irl_lm.decoding.sampling import log_probs, token_scores

__all__ = ["GenerateOutput", "generate", "default_config", "generate_kwargs", "log_probs",
           "token_scores"]
