"""Object detection: the generated shapes sample and its YOLO11n detector, the NPU head split,
numpy post-processing (shipped to the board as is) and COCO mAP."""
