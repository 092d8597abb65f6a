"""The HTML report: self-contained, with every section, and graceful on partial folders."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pytest
import torch

from spdnas.benchmark.euclidean import euclidean_search
from spdnas.cli import main
from spdnas.config import load_config
from spdnas.engine.batches import TensorData
from spdnas.report.experiment import load_experiment
from spdnas.report.html import SECTIONS, render_report, write_report
from tests.report.conftest import TINY, synthetic_trials, write_jsonl


class Page(HTMLParser):
    """Headings, image sources, link targets and table cells of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.images: list[str] = []
        self.references: list[str] = []
        self.cells: list[str] = []
        self._open: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.references += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag in ("h1", "h2", "h3"):
            self._open = tag
            self.headings.append((tag, ""))
        elif tag in ("td", "th"):
            self._open = tag
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        if self._open and self._open.startswith("h"):
            tag, text = self.headings[-1]
            self.headings[-1] = (tag, text + data)
        elif self._open:
            self.cells[-1] += data


def h(page: Page, level: str) -> list[str]:
    return [text for tag, text in page.headings if tag == level]


@pytest.fixture(scope="module")
def experiment_page(experiment_dir, tmp_path_factory):
    path, problems = write_report(experiment_dir, tmp_path_factory.mktemp("out") / "report.html")
    return path, path.read_text(), problems


def test_benchmark_page_has_every_section_and_the_table(experiment_page, experiment_dir):
    _, text, problems = experiment_page
    page = Page(text)
    assert problems == []
    assert h(page, "h2") == [title for _, title in SECTIONS]
    assert {"radar", "toy"} <= set(h(page, "h3"))
    assert h(page, "h3").count("toy / spdnetnas") == 3  # α, cells and curves
    assert "toy / random" in h(page, "h3")
    assert "97.72 ± 0.33" in page.cells  # radar / spdnetnas, from the hand-made results
    assert "spdnetnas" in page.cells and "random" in page.cells
    assert ("radar: spdnetnas 97.72% vs best baseline random 95.50% (chosen on mean validation accuracy, "
            "95.70%) over 6 paired seeds") in text
    assert {"baseline", "paired seeds", "difference (pp)", "95% CI (pp)", "paired t p"} <= set(page.cells)
    assert "Against every baseline (no selection): spdnetnas is significantly better" in text
    assert "Wilcoxon signed-rank W = min(W+, W−) = 0, p = 0.0312" in text
    assert "Wilcoxon not computed (all paired differences are zero)" in text
    assert "In results.jsonl but without search folders: radar / spdnetnas" in text
    assert "search.arch_lr" in page.cells
    assert "40 usable trials of 40 configuration(s); fANOVA sees each configuration once" in text
    assert str(experiment_dir) in page.cells


def test_page_is_self_contained(experiment_page):
    _, text, _ = experiment_page
    page = Page(text)
    # α heatmap, cells, search + train curves of toy/spdnetnas, train curves of toy/random, importance
    assert len(page.images) == 6
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in page.images)
    assert not [ref for ref in page.references if not ref.startswith(("data:", "#"))]
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "@import" not in text and "url(" not in text


def test_plain_run_folder(run_dir, tmp_path):
    path, problems = write_report(run_dir, tmp_path / "quickstart.html")
    text = path.read_text()
    page = Page(text)
    assert problems == []
    assert h(page, "h2") == [title for _, title in SECTIONS]
    assert "No results.jsonl in this folder" in text
    assert "quickstart" in page.cells and "single run" in page.cells
    assert "not recorded in the run folders" in page.cells  # made without spdnas search/train
    result = json.loads((run_dir / "train" / "result.json").read_text())
    assert f"{100 * result['test_accuracy']:.2f}" in page.cells and f"{result['parameters']:,}" in page.cells
    assert "No sweep/trials.jsonl" in text
    assert len(page.images) == 4  # α, cells, search curves, train curves
    assert "this run, epoch 2" in text


def test_a_single_run_names_its_dataset(run_dir, tmp_path):
    """The page named the run folder, never the dataset it was run on."""
    from spdnas.data import write_dataset
    from spdnas.data.storage import Folder
    from spdnas.pipeline import check_same_data
    from tests.helpers import toy_dataset

    root = tmp_path / "named"
    shutil.copytree(run_dir, root)
    uri = tmp_path / "data"
    write_dataset(toy_dataset(12, seed=5, name="tiny"), str(uri))
    config = load_config(None, [f"data.uri={uri}", "data.builder=null"])
    for step in ("search", "train"):  # what spdnas search and spdnas train record
        check_same_data(config, Folder(str(root / step)), resume=True)
    text, problems = render_report(load_experiment(root))
    assert problems == [] and f"tiny ({uri})" in Page(text).cells
    (root / "train" / "data.json").write_text("[")
    text, problems = render_report(load_experiment(root))
    assert problems == [f"{root / 'train' / 'data.json'}: not valid JSON (Expecting value)"]
    assert f"tiny ({uri})" in Page(text).cells  # the search folder's record still names it
    for step in ("search", "train"):  # as recorded before the name was: the URI only
        (root / step / "data.json").write_text(json.dumps({"uri": str(uri), "sha256": "0" * 64}))
    text, problems = render_report(load_experiment(root))
    assert problems == [] and str(uri) in Page(text).cells


def test_search_only_folder_says_what_is_missing(run_dir, tmp_path):
    shutil.copytree(run_dir / "search", tmp_path / "only-search" / "search")
    path, problems = write_report(tmp_path / "only-search")
    assert path == tmp_path / "only-search" / "report.html"
    text = path.read_text()
    assert problems == []
    assert "No train/result.json either: no retraining has finished." in text
    assert "only-search: no train/metrics.jsonl." in text
    assert len(Page(text).images) == 3


def test_a_search_folder_itself_can_be_reported(run_dir):
    text, problems = render_report(load_experiment(run_dir / "search"))
    page = Page(text)
    assert problems == [] and h(page, "h3").count("quickstart / search") == 3  # α, cells, curves
    assert len(page.images) == 3


def test_unreadable_files_are_named_not_fatal(run_dir, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(run_dir, root / "runs" / "toy" / "spdnetnas" / "seed0")
    (root / "results.jsonl").write_text('{"method": "spdnetnas", "dataset": "toy", "seed": 0,\n')
    (root / "runs" / "toy" / "spdnetnas" / "seed0" / "search" / "genotype.json").write_text("{}")
    (root / "sweep").mkdir()
    (root / "sweep" / "trials.jsonl").write_text('{"trial_id": 1, "config": {}, "metric": 0.5}\n[1]\n')
    _, problems = write_report(root)
    text = (root / "report.html").read_text()
    assert any("results.jsonl:1: not valid JSON" in p for p in problems)
    assert any("trials.jsonl:2: expected a JSON object" in p for p in problems)
    assert any("genotype.json" in p and "schema_version" in p for p in problems)
    assert '<h2 id="problems">Problems</h2>' in text and len(Page(text).images) == 3  # α + two curves
    assert "results.jsonl could not be read (see Problems above)" in text
    accuracy = json.loads((run_dir / "train" / "result.json").read_text())["test_accuracy"]
    assert f"{100 * accuracy:.2f}" in Page(text).cells  # the run's own result.json stands in


def test_a_label_names_the_experiment_instead_of_its_local_copy(experiment_dir, tmp_path):
    root = tmp_path / "tmpcopy"
    shutil.copytree(experiment_dir, root)
    (root / "sweep" / "trials.jsonl").write_text("[1]\n")
    path, problems = write_report(root, label="s3://bucket/experiments/bm")
    text = path.read_text()
    assert "<h1>spdnas report: bm</h1>" in text and "<td>s3://bucket/experiments/bm</td>" in text
    assert problems == ["s3://bucket/experiments/bm/sweep/trials.jsonl:1: expected a JSON object, got list"]
    assert str(root) not in text


def test_not_an_experiment(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        write_report(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not an experiment or run folder"):
        write_report(tmp_path)


def test_cli_writes_the_page(run_dir, tmp_path, capsys):
    target = tmp_path / "sub" / "page.html"
    assert main(["report", str(run_dir), "--output", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {target}"
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "absent")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'absent'}: no such folder"


def test_a_file_is_not_an_experiment_folder(run_dir, capsys):
    """`spdnas report README.md` said "README.md: no such folder" of a file that exists."""
    result = run_dir / "train" / "result.json"
    assert main(["report", str(result)]) == 1
    assert capsys.readouterr().err == (f"error: {result}: a file, not an experiment folder; give the folder "
                                       "of an experiment or run (with results.jsonl, runs/, sweep/, search/ "
                                       "or train/)\n")


def test_each_unreadable_file_is_one_problem_on_the_page_and_on_stderr(run_dir, tmp_path, capsys):
    """A run's metrics.jsonl, result.json and genotype.json broken: the Problems list showed the
    metrics.jsonl error twice (the α and the learning-curve sections read it), and a result.json
    with a bad value was not named (its row read the search's metrics.jsonl first, then failed
    with a bare "could not convert string to float"); nor was a file that is not UTF-8 text."""
    root = tmp_path / "broken"
    shutil.copytree(run_dir, root)
    metrics, result, genotype = (root / "search" / "metrics.jsonl", root / "train" / "result.json",
                                 root / "search" / "genotype.json")
    metrics.write_text(metrics.read_text() + "{not json\n")
    result.write_text('{"test_accuracy": "n/a"}\n')
    genotype.write_bytes(b"\xff\xfe binary")
    assert main(["report", str(root)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    listed = (root / "report.html").read_text().split('<h2 id="problems">Problems</h2>')[1].split("</ul>")[0]
    for path in (metrics, result, genotype):
        assert sum(str(path) in line for line in warnings) == 1, (path, warnings)
        assert listed.count(str(path)) == 1, (path, listed)
    assert len(warnings) == 3 and listed.count("<li") == 3
    assert any(f"{result}: a value is not a number" in line for line in warnings)
    assert any(f"{genotype}: not UTF-8 text" in line for line in warnings)

    shutil.copy(run_dir / "train" / "result.json", result)  # a readable result.json shows its row
    text, problems = render_report(load_experiment(root))
    accuracy = json.loads(result.read_text())["test_accuracy"]
    assert f"{100 * accuracy:.2f}" in Page(text).cells and len(problems) == 2


def test_an_error_naming_no_file_is_one_problem_per_place():
    """De-duplicating on the error text alone merged two runs' missing fields into one problem."""
    from spdnas.report.html import _add_problem

    problems = []
    for dataset in ("toy", "other", "toy"):
        where = f"{dataset} / spdnetnas (alpha_block)"
        _add_problem(problems, where, KeyError("weights_reduce"))
    assert problems == ["toy / spdnetnas (alpha_block): 'weights_reduce'",
                        "other / spdnetnas (alpha_block): 'weights_reduce'"]
    for where in ("alphas", "curves"):
        _add_problem(problems, where, ValueError("/runs/a/search/metrics.jsonl: line 3 is not JSON"))
    assert problems[2:] == ["alphas: /runs/a/search/metrics.jsonl: line 3 is not JSON"]


def euclidean_search_folder(variant: str, seed: int, directory) -> None:
    """What the darts/fairdarts methods leave in ``directory / "search"``: a real one-epoch search."""
    config = load_config(None, [*TINY, "search.epochs=1", f"runtime.seed={seed}"])
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(30, 6, generator=generator, dtype=torch.float64), torch.arange(30) % 3
    features = {"search_train": TensorData(x[:15], y[:15]), "search_val": TensorData(x[15:], y[15:])}
    euclidean_search(variant, config, features, 3, directory)


def test_euclidean_genotypes_and_mixture_weights_are_shown(tmp_path):
    root = tmp_path / "euclidean"
    for variant, seeds in (("darts", (0, 1)), ("fairdarts", (0,))):
        for seed in seeds:
            euclidean_search_folder(variant, seed, root / "runs" / "toy" / variant / f"seed{seed}")
    _, problems = write_report(root)
    text = (root / "report.html").read_text()
    page = Page(text)
    assert problems == [] and 'class="problem"' not in text
    assert "no mixture weights" not in text
    assert h(page, "h3").count("toy / darts") == 3 and h(page, "h3").count("toy / fairdarts") == 3
    for variant in ("darts", "fairdarts"):
        assert f'alt="mixture weights of toy / {variant}"' in text
        assert f'alt="derived cell of toy / {variant}"' in text
    assert "cell (node ← op(input))" in page.cells  # every seed's genotype (darts has two)
    genotype = json.loads((root / "runs/toy/darts/seed1/search/genotype.json").read_text())
    assert any(cell.startswith("0 ← ") and f"{genotype['edges'][0][0]}(" in cell for cell in page.cells)


def test_best_sweep_trial_follows_the_recorded_mode(tmp_path):
    trials = [{**t, "mode": "min"} for t in synthetic_trials(5)]
    lowest = min(trials, key=lambda t: t["metric"])
    write_jsonl(tmp_path / "sweep" / "trials.jsonl", trials)
    text, problems = render_report(load_experiment(tmp_path))
    assert problems == []
    assert "Best configuration (lowest mean metric, sweep.mode = min): model.mixture = " in text
    assert f"search.arch_lr = {lowest['config']['search.arch_lr']:.4g}, " in text
    assert f"mean metric {lowest['metric']:.4g} over 1 trial ({lowest['trial_id']})" in text
    write_jsonl(tmp_path / "sweep" / "trials.jsonl", synthetic_trials(5))
    text, _ = render_report(load_experiment(tmp_path))
    assert ("Best configuration (highest mean metric, sweep.mode = max assumed: trials.jsonl does not "
            "record the mode)" in text)


def test_run_folders_results_jsonl_does_not_list_are_left_out(experiment_dir, tmp_path):
    root = tmp_path / "experiment"
    shutil.copytree(experiment_dir, root)
    runs = root / "runs" / "toy" / "spdnetnas"
    shutil.copytree(runs / "seed0", runs / "seed7")
    _, problems = write_report(root)
    text = (root / "report.html").read_text()
    assert any("left out 1 run folder(s) that results.jsonl does not list" in p and "toy/spdnetnas/seed7" in p
               for p in problems)
    assert "seeds 0, 1." in text and "seed7" not in text.replace("toy/spdnetnas/seed7", "")


def test_one_damaged_seed_leaves_the_other_seeds_figures(experiment_dir, tmp_path):
    root = tmp_path / "experiment"
    shutil.copytree(experiment_dir, root)
    runs = root / "runs" / "toy" / "spdnetnas"
    metrics = runs / "seed0" / "search" / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:200])  # cut short, as by a killed writer
    (runs / "seed1" / "search" / "genotype.json").write_text('{"normal": [["Bogus", 0]]}')
    _, problems = write_report(root)
    text = (root / "report.html").read_text()
    page = Page(text)
    assert len(page.images) == 6  # as with nothing damaged: each figure from the seeds that read
    assert "seed 1 (searching seeds: 0, 1)" in text  # α of seed 1
    assert "seed 0 (searching seeds: 0, 1)" in text  # cells of seed 0
    assert "final training; seeds 0, 1." in text and "architecture search (supernet); seeds 1." in text
    assert "unreadable" in page.cells
    assert sorted(p.split(":")[0] for p in problems) == [  # read by the α and the curves sections: once
        "toy / spdnetnas genotype, seed 1", "toy / spdnetnas search/metrics.jsonl, seed 0"]


def test_failed_runs_are_named_under_their_dataset(experiment_dir, tmp_path):
    root = tmp_path / "experiment"
    shutil.copytree(experiment_dir, root)
    failed = [{"dataset": "toy", "method": "random", "seed": 2, "error": "ValueError: loss is NaN <b>"},
              {"dataset": "lost", "method": "spdnetnas", "seed": 0, "error": "MemoryError"}]
    bad = {"method": "random", "seed": None, "error": "no dataset, no seed"}
    (root / "failed.jsonl").write_text("".join(json.dumps(f) + "\n" for f in [*failed, bad]))
    _, problems = write_report(root)
    page = Page((root / "report.html").read_text())
    assert problems == [f"{root / 'failed.jsonl'}: record 3 needs a dataset, a method and an integer seed; "
                        "left out"]
    text = (root / "report.html").read_text()
    assert {"toy", "radar", "lost"} <= set(h(page, "h3")) and "no dataset, no seed" not in text
    assert ("Not finished, so left out of every mean and test (1 run(s)): random seed 2: ValueError: loss is "
            "NaN &lt;b&gt;.") in text
    assert "spdnetnas seed 0: MemoryError." in text


def test_a_single_fit_has_a_note_not_an_empty_learning_curve(tmp_path):
    from spdnas.report.outputs import write_history

    record = {"method": "mdm", "dataset": "toy", "seed": 0, "test_accuracy": 0.8, "val_accuracy": 0.8,
              "parameters": None, "search_seconds": 0.0, "train_seconds": 0.1, "details": {}}
    write_jsonl(tmp_path / "results.jsonl", [record])
    write_history([{"val_accuracy": 0.8, "test_accuracy": 0.8, "seconds": 0.1}],
                  tmp_path / "runs" / "toy" / "mdm" / "seed0" / "train")
    text, problems = render_report(load_experiment(tmp_path))
    assert problems == [] and "A single fit, no epochs: no learning curve." in text
    assert "train learning curves of toy / mdm" not in text
