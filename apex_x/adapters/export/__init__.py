"""Export formats of a trained network (ModelExporter port): ONNX (onnxruntime) and TorchScript."""
