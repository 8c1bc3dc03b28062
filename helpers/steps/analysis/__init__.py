"""Notebook 50's step: the per-layer quantization error (run accuracy_analysis, parse its error_analysis.txt, flag and
rank the layers) and the quantization sweep (algorithm x method); the sentences are in helpers.text.analysis.

One module per job: run (the toolkit call, the demo calibration, the CSV writer), parse (error_analysis.txt), rank
(warning signs, ranking), sweep (the algorithm x method sweep and its best setting), plots. The names below are the
step's public surface, so a notebook reads `analysis.rank_layers(...)`."""
from helpers.steps.analysis.parse import (
    ERROR_FILE,
    NON_LAYER_OPS,
    Column,
    combine,
    excerpt,
    parse_error_analysis,
    parse_header,
    value_columns,
)
from helpers.steps.analysis.plots import demo_note, paired_dots, plot_layers, plot_sweep, save_figure, top1_cosine_bars
from helpers.steps.analysis.rank import LAYERS_MEANING, candidates, rank_layers, warning_signs
from helpers.steps.analysis.run import analysis_images, run_accuracy_analysis, small_calibration, write_csv
from helpers.steps.analysis.sweep import (
    PAIRED_COLUMNS,
    algorithm_in_log,
    best_row,
    crash_reason,
    parse_grid,
    row_paired,
    run_sweep,
    sweep_cell,
    sweep_figures,
    sweep_metric,
    sweep_table,
    table_value,
)

__all__ = ["ERROR_FILE", "NON_LAYER_OPS", "Column", "combine", "excerpt", "parse_error_analysis", "parse_header", "value_columns",
           "demo_note", "paired_dots", "plot_layers", "plot_sweep", "save_figure", "top1_cosine_bars", "LAYERS_MEANING",
           "candidates", "rank_layers", "warning_signs", "analysis_images", "run_accuracy_analysis", "small_calibration",
           "write_csv", "PAIRED_COLUMNS", "algorithm_in_log", "best_row", "crash_reason", "parse_grid", "row_paired",
           "run_sweep", "sweep_cell", "sweep_figures", "sweep_metric", "sweep_table", "table_value"]
