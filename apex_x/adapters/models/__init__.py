"""Models: the timm student, TeacherModelV3 (DINOv2 + LoRA) and their shared heads."""
