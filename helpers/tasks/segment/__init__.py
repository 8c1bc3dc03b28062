"""Instance segmentation (task: segment): the offline shapes sample with polygon labels, mask decode, COCO segm mAP."""
