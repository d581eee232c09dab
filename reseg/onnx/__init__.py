"""The ONNX core: export a model for any input size and check it against PyTorch (export.py, on trace.py,
which TorchScript export shares), quantise it to int8 (quantize.py), run it with ONNX Runtime (session.py).

It works on models and files only; backends.py (cached sessions behind the Predictor) and export.py
(checkpoints to files) are built on it, and nothing here imports them.
"""
