"""run_log and citations: the header of <prefix>.log, the log only with a complete output set,
and the citation PHIL that --citations reads."""
from __future__ import annotations

import libtbx.phil
import pytest
from libtbx.citations import master_citation_phil

from meteor_cctbx.citations import PAPERS, PROGRAM_PAPERS, citation_lines, citation_phil
from meteor_cctbx.phil import master_phil
from meteor_cctbx.programs.diffmap import Program as Diffmap
from meteor_cctbx.run_log import non_default_parameters, run_log_header

from helpers import FAST, example_inputs, run_program


def test_non_default_parameters_are_exactly_the_changed_ones():
    master = master_phil("diffmap")
    working = master.fetch(source=libtbx.phil.parse("tv.weight = 0.02\nd_min = 2.5\n"
                                                    "kweight.mode = optimize"))
    text = non_default_parameters(master, working)
    extract = master.fetch(source=libtbx.phil.parse(text)).extract()
    assert extract.tv.weight == 0.02 and extract.d_min == 2.5
    assert "kweight" not in text  # set to its default: not a change
    assert non_default_parameters(master, master) == ""


def test_header_names_program_version_command_line_and_papers():
    header = run_log_header(["meteor.diffmap", "a b.mtz", "c.mtz"], "d_min = 2",
                            citation_lines(PROGRAM_PAPERS["diffmap"]))
    lines = header.splitlines()
    assert lines[0].startswith("meteor.diffmap (meteor_cctbx ")
    assert lines[1] == "Command line: meteor.diffmap 'a b.mtz' c.mtz"  # shell-quoted
    assert "  d_min = 2" in lines and lines[-1] == "=" * 79
    assert sum(line.startswith("  ") and "doi:" in line for line in lines) == \
        len(PROGRAM_PAPERS["diffmap"])


def test_log_is_written_with_the_outputs_and_not_after_a_refusal(example, in_tmp, capsys):
    status, _, err = run_program(Diffmap, example_inputs(example) + FAST + ["d_min=2.5"],
                                 capsys)
    assert status == 0, err
    log = (in_tmp / "meteor_diffmap.log").read_text()
    assert "d_min = 2.5" in log.split("=" * 79)[0] and "k-weighting with k = 0.05" in log
    (in_tmp / "refused").mkdir()
    status, _, _ = run_program(Diffmap, example_inputs(example) + FAST + [
        "output.prefix=refused/run", "tv.search_range=1 0.1", "tv.mode=optimize"], capsys)
    assert status == 1 and not list((in_tmp / "refused").iterdir())


@pytest.mark.parametrize("program", sorted(PROGRAM_PAPERS))
def test_citation_phil_is_libtbx_format_with_a_doi_each(program):
    citations = master_citation_phil.fetch(source=citation_phil(program)).extract().citation
    assert [c.article_id for c in citations] == list(PROGRAM_PAPERS[program])
    for citation in citations:
        assert citation.doi_id == PAPERS[citation.article_id][-1] and citation.year


@pytest.mark.parametrize("program", sorted(PROGRAM_PAPERS))
def test_citations_option_prints_every_paper_of_the_program(program, capsys):
    import importlib

    main = importlib.import_module(f"meteor_cctbx.command_line.{program}").main
    main(["--citations"])
    out = " ".join(capsys.readouterr().out.split())
    for article_id in PROGRAM_PAPERS[program]:
        authors, title, *_, year, _ = PAPERS[article_id]
        assert f"{authors.split()[0]}" in out and f"({year})" in out
        assert " ".join(title.split()[:4]) in out, (article_id, out)
