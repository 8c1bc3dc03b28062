"""Object detection (task: detect).

sample       the generated shapes data set (YOLO labels + data.yaml) and YOLO11n trained on it offline
head         ONNX export with the stock head or the head split per stride for INT8 (head: split | stock); the head's
             structure (reg_max, end-to-end branch, classes, strides) read from the model
postprocess  letterbox, box decode (DFL or plain distances), score threshold, per-class NMS or an end-to-end head's
             top-k (numpy; ships to the board)
guard        notebook 10's check of every export against the original model's own predict()
labels       reading a data.yaml split into images + ground-truth boxes, with the bad-label checks
metric       COCO mAP50-95 / mAP50 / per-class AP with pycocotools
simulate     raw outputs from ONNX Runtime and the INT8 toolkit simulator; the evaluation loop
"""
