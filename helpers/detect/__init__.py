"""Object detection (task: detect).

sample       the generated shapes data set (YOLO labels + data.yaml) and YOLO11n trained on it offline
head         ONNX export with the stock head or the head split per stride for INT8 (head: split | stock)
postprocess  letterbox, distribution-to-box decode, score threshold, per-class NMS (numpy; ships to the board)
labels       reading a data.yaml split into images + ground-truth boxes, with the bad-label checks
metric       COCO mAP50-95 / mAP50 / per-class AP with pycocotools
simulate     raw outputs from ONNX Runtime and the INT8 toolkit simulator; the evaluation loop
"""
