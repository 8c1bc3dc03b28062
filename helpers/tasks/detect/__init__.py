"""Object detection (task: detect): letterbox, decode + NMS, COCO mAP, YOLO labels, the offline sample."""
