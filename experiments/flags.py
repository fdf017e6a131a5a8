"""Command-line flags of ``experiments.run`` (and its one-suite entry points)."""
from absl import flags

from irl_lm.errors import ConfigError


def define() -> None:
  """Defines the shared flags (once, whichever entry point imports this first)."""
  if "outdir" in flags.FLAGS:
    return
  flags.DEFINE_string("outdir", "docs/results", "Where tables and plots go.")
  flags.DEFINE_string("workroot", None,
                      "Where runs go; finished runs are reused (default: a new temp dir).")
  flags.DEFINE_integer("seeds", 5, "Seeds per setting.")
  flags.DEFINE_integer("workers", 2, "Worker processes, one CPU core each.")
  flags.DEFINE_bool("quick", False, "Tiny sizes and one seed: checks that every artefact is made.")
  flags.DEFINE_string("teacher", None, "Imitation benchmark: a Hugging Face causal-LM directory "
                      "as the expert (default: train one).")


def check() -> None:
  """One error line for an out-of-range flag, before any work."""
  for name in ("seeds", "workers"):
    if flags.FLAGS[name].value < 1:
      raise ConfigError("value out of range", f"--{name}", expected="value >= 1",
                        found=flags.FLAGS[name].value)
