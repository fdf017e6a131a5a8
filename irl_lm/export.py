"""Export a trained workdir as a Hugging Face directory.

  python -m irl_lm.export --workdir=RUN --output=HF_DIR [--step=N] [--format=merged|peft]

transformers' PyTorch ``from_pretrained(HF_DIR)`` then loads it; ILQL value
heads go to ``HF_DIR/value_heads.safetensors`` and a separate value trunk
(``loss.ilql.separate_value_trunk``) to ``HF_DIR/value_trunk.safetensors``. A run
that started from a Hugging Face checkpoint (``model.init_from``) gets that
checkpoint's own config.json back, with its generation config and tokenizer files. The
tokenizer the run was trained with (``data.vocabulary_path``'s ``tokenizer.json`` and its
neighbours, or its SentencePiece model) goes with the model, so ``generate --hf_dir`` and
transformers read the export's text as the run did. A LoRA run exports its adapters merged
into the weights, or with ``--format=peft`` as a PEFT adapter (``adapter_config.json`` +
``adapter_model.safetensors``) of the checkpoint it started from.
"""
import os

from absl import flags

from irl_lm import cli
from irl_lm.errors import ConfigError

flags.DEFINE_string("workdir", None, "Trained irl_lm workdir.")
flags.DEFINE_string("output", None, "Directory to write.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest that restores).")
flags.DEFINE_bool("overwrite", False, "Replace the model files already in --output.")
flags.DEFINE_enum("format", "merged", ["merged", "peft"],
                  "merged: the whole model (LoRA adapters folded in); peft: a LoRA run's "
                  "adapters as a PEFT adapter of its config.model.init_from.")
flags.mark_flags_as_required(["workdir", "output"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  existing = [f for f in ("config.json", "model.safetensors", "model.safetensors.index.json",
                          "adapter_config.json", "adapter_model.safetensors")
              if os.path.exists(os.path.join(FLAGS.output, f))]
  if existing and not FLAGS.overwrite:
    raise ConfigError("the output directory already holds a model; pass --overwrite to replace "
                      "it", f"--output={FLAGS.output}", expected="a new or empty directory",
                      found=", ".join(existing))
  from irl_lm.workdir import export
  for note in export(FLAGS.workdir, FLAGS.output, FLAGS.step, FLAGS.format == "peft"):
    print(f"note: {note}")
  print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  cli.run(main)
