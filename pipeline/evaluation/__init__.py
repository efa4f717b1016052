"""Model evaluation with TFMA: the run's ``EvalConfig`` (config), the catalogue recall metric TFMA loads
(recall), the Evaluator component that takes the run's thresholds and baseline model (evaluator), and the verdict
with each threshold's outcome (outcomes)."""
