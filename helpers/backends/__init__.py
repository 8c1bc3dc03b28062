"""One Runner interface over ONNX Runtime, the toolkit simulator, the board and TorchScript; task-agnostic."""
