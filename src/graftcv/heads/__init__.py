"""Heads on frozen features: the op registry and TensorHead (`ops`), scikit-learn heads by name (`sklearn`) and
their export to tensors (`export`), the prototype head, decision trees as tensors (`trees`)."""
