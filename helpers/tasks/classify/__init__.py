"""Classification: top-k accuracy, the evaluation loop, FP32-vs-INT8 comparison, plots and the judge."""
