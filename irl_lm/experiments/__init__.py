"""End-to-end experiments on the embedded tasks: IQLearn vs MLE, ILQL vs behaviour cloning,
and IQLearn's extracted reward. Run with ``python -m irl_lm.experiments.run``."""
