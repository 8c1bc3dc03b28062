"""tests/compare_runs.py, the check a refactor is judged by: a result that differs is reported, a time, a
throughput or the run folder's own path is not."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compare_runs import differences  # noqa: E402


def _run(root: Path, top1: float, seconds: float, images_per_s: float, tag: str = "8be01d2", rule_top1: float = 0.9) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "analysis").mkdir()
    (root / "report").mkdir()
    metrics = {"backends": [{"name": "INT8", "top1": top1, "seconds": seconds, "images_per_s": images_per_s,
                             "model": str(root / "rknn" / "model.rknn")}]}
    (root / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (root / "analysis" / "layers.csv").write_text("layer,entire,build_s\nconv1,0.99,%s\n" % seconds)
    (root / "report" / "index.html").write_text(f"<h1>{root.name}</h1><p>INT8 top-1 {100 * top1:.1f}% in {seconds} s</p>"
                                                f"<span class=tag>model {tag}</span>")
    (root / "hybrid").mkdir()
    (root / "hybrid" / "rules.csv").write_text(f"model,chosen_layers,top1\nworkbook: lowest single cosine,8,{rule_top1}\n")
    return root


def test_same_results_in_another_folder_at_another_speed_are_the_same(tmp_path):
    assert differences(_run(tmp_path / "before", 0.98, 3.0, 600.0), _run(tmp_path / "after", 0.98, 7.5, 150.0)) == []


def test_a_changed_metric_is_reported_in_the_file_and_on_the_index(tmp_path):
    diffs = differences(_run(tmp_path / "before", 0.98, 3.0, 600.0), _run(tmp_path / "after", 0.97, 3.0, 600.0))
    assert "eval/metrics.json backends.0.top1: 0.98 != 0.97" in diffs
    assert any(d.startswith("index.html only in a:") and "98.0%" in d for d in diffs)


def test_model_tags_are_masked_and_the_rules_table_is_compared(tmp_path):
    """The index tags figures with a hash of rknn/convert.json (which holds paths): another folder's hash is not a
    different result; notebook 60's tutorial-rule table (hybrid/rules.csv) is one of the results compared."""
    assert differences(_run(tmp_path / "before", 0.98, 3.0, 600.0, tag="8be01d2"),
                       _run(tmp_path / "after", 0.98, 3.0, 600.0, tag="3f2a91c")) == []
    diffs = differences(_run(tmp_path / "a", 0.98, 3.0, 600.0), _run(tmp_path / "b", 0.98, 3.0, 600.0, rule_top1=0.8))
    assert diffs == ["hybrid/rules.csv 0.top1: '0.9' != '0.8'"]
