"""Files shipped in the deployment bundle: the on-board runner (run_rknn.py), which imports chips.py (the chip and
core-mask rules) and the workbook's own helpers/tasks/preprocess.py, copied next to it in the bundle byte for byte."""
