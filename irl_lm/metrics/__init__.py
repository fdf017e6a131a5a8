"""Text metrics as seqio-style metric functions: ``fn(targets, predictions) -> dict[str, float]``.

Scores are percentages (0-100) like seqio/t5 report them: ROUGE F-measures, BLEU,
exact final-number accuracy and Self-BLEU; plus diversity of token sequences (distinct n-grams,
n-gram entropy). Nothing here imports the rest of irl_lm.
"""
from irl_lm.metrics.accuracy import final_number, final_number_accuracy
from irl_lm.metrics.bleu import bleu, self_bleu
from irl_lm.metrics.diversity import distinct_n, ngram_entropy
from irl_lm.metrics.rouge import rouge

__all__ = ["bleu", "distinct_n", "final_number", "final_number_accuracy", "ngram_entropy",
           "rouge", "self_bleu"]
