"""Pose estimation (task: pose): keypoint decode + NMS, OKS mAP (pycocotools keypoints), YOLO pose labels, the offline
stick-figure sample."""
