"""Training: the TMSDF losses, the adapters MONAI's trainer and evaluator call, and the training handlers."""
