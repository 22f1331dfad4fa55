from clihelp import cli
from test_curate import dataset  # noqa: F401  (fixture)
from typer.testing import CliRunner

from ciyuan.cli.main import app

runner = CliRunner()


def test_steps_lists_every_step_with_parameters():
    out = cli("steps")
    names = [s["name"] for s in out["steps"]]
    assert names == ["normalize", "langid", "quality", "pii", "exact_dedup", "near_dedup", "decontaminate", "length",
                     "media_filter", "audio_quality", "caption_length", "media_exact_dedup", "media_near_dedup",
                     "episode_task_text", "episode_idle_trim", "episode_filter", "episode_exact_dedup",
                     "episode_near_dedup", "episode_stats", "graph_canonical", "graph_dedup", "graph_pii",
                     "shacl_filter"]
    assert "knowledge-graph" in out["recipes"]
    assert "text-pretrain" in out["recipes"] and "text-sft" in out["recipes"]


def test_curate_report_and_show_rejected(dataset, tmp_path):  # noqa: F811
    out = cli("curate", dataset.ref, "--recipe", "text-pretrain", "--workers", "1")
    for key in ("version", "kept", "rejected", "changed", "tokens_before", "tokens_after", "steps"):
        assert key in out
    ref = f"plant@{out['version'][:12]}"
    html_path = tmp_path / "r.html"
    rep = cli("report", ref, "--out", str(html_path))
    page = html_path.read_text(encoding="utf-8")
    assert "<svg" in page and "http://" not in page and "https://" not in page
    assert rep["pii"] and rep["languages"] and rep["duplicate_clusters"]
    shown = cli("show", ref, "--rejected", "--reason", "near_dedup")
    assert shown["items"] and all(it["step"] == "near_dedup" for it in shown["items"])


def test_steps_shorthand_and_error_exit_code(dataset):  # noqa: F811
    out = cli("curate", dataset.ref, "--steps", "normalize,pii,exact_dedup,near_dedup", "--workers", "1")
    assert [s["step"] for s in out["steps"]] == ["normalize", "pii", "exact_dedup", "near_dedup"]
    res = runner.invoke(app, ["curate", dataset.ref, "--steps", "bogus", "--json"])
    assert res.exit_code == 2 and "unknown step" in res.stdout
