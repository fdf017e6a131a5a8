"""Export a trained workdir as a Hugging Face directory.

  python -m irl_lm.export --workdir=RUN --output=HF_DIR [--step=N]

transformers' PyTorch ``from_pretrained(HF_DIR)`` then loads it; ILQL value
heads go to ``HF_DIR/value_heads.safetensors``.
"""
from absl import app, flags

flags.DEFINE_string("workdir", None, "Trained irl_lm workdir.")
flags.DEFINE_string("output", None, "Directory to write.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.mark_flags_as_required(["workdir", "output"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  del argv
  from irl_lm.models import save_pretrained
  from irl_lm.training.checkpoints import load_for_generation
  model, params, _, _ = load_for_generation(FLAGS.workdir, FLAGS.step)
  save_pretrained(model, params, FLAGS.output)
  print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
