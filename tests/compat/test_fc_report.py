"""Flowcept.generate_report: the workflow card (Markdown) from a buffer file, the store or records,
and the provenance report (HTML)."""

from __future__ import annotations

import pytest

from flowcept_dist import Flowcept, flowcept_task


@flowcept_task
def scale(x, factor=2):
    return x * factor


@flowcept_task
def explode(x):
    raise ValueError(f"cannot take {x}")


def _run(settings):
    with Flowcept(workflow_name="card-run", campaign_id="c1", settings=settings) as fc:
        for i in range(3):
            scale(i)
        with pytest.raises(ValueError):
            explode(7)
    return fc


def _check_card(text: str, wf_id: str) -> None:
    assert "# Workflow card: card-run" in text and f"`{wf_id}`" in text
    assert "| tasks | 4 (ERROR 1, FINISHED 3) |" in text
    assert "| scale | 3 |" in text and "| explode | 1 |" in text
    assert "## Errors (1)" in text and "ValueError: cannot take 7" in text


def test_workflow_card_from_the_offline_buffer_file(settings_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = settings_factory(transport__type="file", file__path=str(tmp_path / "buffer.jsonl"))
    fc = _run(settings)
    out = Flowcept.generate_report(output_path=str(tmp_path / "WORKFLOW_CARD.md"), settings=settings)
    assert out["input_mode"] == "jsonl" and out["tasks"] == 4 and out["errors"] == 1
    _check_card((tmp_path / "WORKFLOW_CARD.md").read_text(), fc.workflow_id)
    assert (tmp_path / "WORKFLOW_CARD.md").stat().st_mode & 0o077 == 0


def test_workflow_card_from_the_store_and_from_records(settings_factory, tmp_path):
    settings = settings_factory()
    fc = _run(settings)
    out = Flowcept.generate_report(workflow_id=fc.workflow_id, output_path=str(tmp_path / "a.md"), settings=settings)
    assert out["input_mode"] == "db" and out["workflow_id"] == fc.workflow_id
    _check_card((tmp_path / "a.md").read_text(), fc.workflow_id)
    recs = Flowcept.read_buffer_file(workflow_id=fc.workflow_id)
    Flowcept.generate_report(records=recs, output_path=str(tmp_path / "b.md"))
    assert "| scale | 3 |" in (tmp_path / "b.md").read_text()


def test_provenance_report_is_the_html_report_and_bad_choices_say_what_works(settings_factory, tmp_path):
    pytest.importorskip("bokeh")
    settings = settings_factory()
    fc = _run(settings)
    out = Flowcept.generate_report("provenance_report", "html", output_path=str(tmp_path / "r.html"),
                                   workflow_id=fc.workflow_id, settings=settings)
    page = (tmp_path / "r.html").read_text()
    assert out["format"] == "html" and "card-run" in page and "<script" in page
    with pytest.raises(ValueError, match="made as html, not 'pdf'"):
        Flowcept.generate_report("provenance_report", "pdf", settings=settings)
    with pytest.raises(ValueError, match="known: workflow_card, provenance_report"):
        Flowcept.generate_report("summary", settings=settings)
    with pytest.raises(ValueError, match="give one input"):
        Flowcept.generate_report(records=[{}], workflow_id="w", settings=settings)
