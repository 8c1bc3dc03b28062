"""rknn-toolkit2 itself: the one RKNN entry point, the conversion options, the convert.json record."""
