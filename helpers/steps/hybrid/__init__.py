"""Notebook 60's step, hybrid quantization: keep chosen layers in float16 (or int16) and the rest in INT8; the
sentences are in helpers.text.hybrid.

One module per job: cfg (step 1's files, the .quantization.cfg and the .model graph), build (the toolkit's two steps,
building and measuring a hybrid), search (the float16 search), bench (the strategies and INT8 / auto_hybrid),
choice (the export rule), plots. The names below are the step's public surface, so a notebook reads `hybrid.step1(...)`."""
from helpers.steps.hybrid.bench import (
    AUTO_HYBRID,
    TUTORIAL_RULE,
    WORKBOOK_RULE,
    Bench,
    auto_hybrid,
    baseline_files,
    compare_rules,
    compare_strategies,
    load_baseline,
    measure_int8,
    rule_layers,
    save_baseline,
    strategy_file,
)
from helpers.steps.hybrid.build import (
    PAIRED_PREFIXES,
    Judged,
    Variant,
    built,
    float16_tensors,
    judged,
    measure,
    paired_columns,
    paired_of,
    step1,
    step2,
)
from helpers.steps.hybrid.cfg import (
    CFG_KEY,
    DTYPE_ALIASES,
    DTYPES,
    EDITED_SUFFIX,
    QuantCfg,
    Step1Files,
    activation_tensors,
    as_selection,
    find_step1,
    graph_inputs,
    input_channels,
    layer_graph,
    normalise_dtype,
    read_cfg,
    render_cfg,
    validate_selection,
    write_cfg,
)
from helpers.steps.hybrid.choice import (
    choose_export,
    export_candidates,
    export_choice,
    not_below_int8,
    search_name,
    write_chosen,
)
from helpers.steps.hybrid.plots import axis_label, layer_picker, plot_compare, plot_search
from helpers.steps.hybrid.search import SearchPoint, accuracy_search, doubling, search, search_columns, with_inputs, within

__all__ = ["AUTO_HYBRID", "TUTORIAL_RULE", "WORKBOOK_RULE", "compare_rules", "rule_layers", "PAIRED_PREFIXES",
           "Judged", "paired_columns", "paired_of", "search_name", "search_columns", "Bench", "auto_hybrid",
           "baseline_files", "compare_strategies", "load_baseline", "measure_int8", "save_baseline", "strategy_file",
           "Variant", "built", "float16_tensors", "judged", "measure", "step1", "step2", "CFG_KEY", "DTYPE_ALIASES",
           "DTYPES", "EDITED_SUFFIX", "QuantCfg", "Step1Files", "activation_tensors", "as_selection", "find_step1",
           "graph_inputs", "input_channels", "layer_graph", "normalise_dtype", "read_cfg", "render_cfg",
           "validate_selection", "write_cfg", "choose_export", "export_candidates", "export_choice", "not_below_int8",
           "write_chosen", "axis_label", "layer_picker", "plot_compare", "plot_search", "SearchPoint",
           "accuracy_search", "doubling", "search", "with_inputs", "within"]
