"""Training: config, train state, jitted steps, checkpoints, evaluation and the loop.

Import the pieces from their modules (``irl_lm.training.trainer``,
``irl_lm.training.config``, ...); config files import only ``config``.
"""
