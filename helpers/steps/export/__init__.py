"""Notebook 10: the model a run works on, its ONNX / TorchScript export and the head rewrites for INT8."""
