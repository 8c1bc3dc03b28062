"""Files shipped in the deployment bundle: the on-board runner (run_rknn.py), which imports chips.py (the chip and
core-mask rules), throughput.py (--benchmark, --cores) and the workbook's own helpers/tasks/preprocess.py, copied next
to it in the bundle byte for byte; and what notebook 40 shows about them (the README, the PC-to-board script)."""
