"""The evidence behind docs/results: ILQL under delayed rewards against behaviour cloning
(`offline_rl`), and IQLearn against MLE with a known expert (`imitation`). Run with
``python -m experiments.run``; `jobs` runs and caches the trainings, `rollouts` plays
policies against the tasks, `protocol` and the `report*` modules summarise them."""
