"""What ``dna export`` can write, importable without torch (the command's parser lists it)."""

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 18
