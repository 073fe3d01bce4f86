"""The papers behind each program, in libtbx's citation PHIL format (``--citations``) and as
one line each for the top of ``<prefix>.log``."""
from __future__ import annotations

import libtbx.phil
from libtbx.citations import master_citation_phil

#: article_id -> (authors, title, journal, volume, pages, year, doi)
PAPERS = {
    "meteor": ("meteor-maps authors (rs-station)",
               "meteor-maps: TV-denoised, k-weighted crystallographic difference maps (the paper "
               "of this DOI)",
               "Commun. Biol.", None, None, 2025, "10.1038/s42003-025-09031-6"),
    "rof": ("Rudin LI, Osher S, Fatemi E",
            "Nonlinear total variation based noise removal algorithms",
            "Physica D", "60", "259-268", 1992, "10.1016/0167-2789(92)90242-F"),
    "beck_teboulle": ("Beck A, Teboulle M",
                      "Fast gradient-based algorithms for constrained total variation image "
                      "denoising and deblurring problems",
                      "IEEE Trans. Image Process.", "18", "2419-2434", 2009,
                      "10.1109/TIP.2009.2028250"),
    "french_wilson": ("French S, Wilson K", "On the treatment of negative intensity "
                      "observations", "Acta Cryst. A", "34", "517-525", 1978,
                      "10.1107/S0567739478001114"),
    "read_1986": ("Read RJ", "Improved Fourier coefficients for maps using phases from "
                  "partial structures with errors", "Acta Cryst. A", "42", "140-149", 1986,
                  "10.1107/S0108767386099622"),
    "occupy": ("Forsberg BO, Shah PNM, Burt A",
               "A robust normalized local filter to estimate compositional heterogeneity "
               "directly from cryo-EM maps", "Nat. Commun.", "14", "5802", 2023,
               "10.1038/s41467-023-41478-1"),
    "terwilliger_2018": ("Terwilliger TC, Sobolev OV, Afonine PV, Adams PD",
                         "Automated map sharpening by maximization of detail and connectivity",
                         "Acta Cryst. D", "74", "545-559", 2018, "10.1107/S2059798318004655"),
    "genick_2007": ("Genick UK", "Structure-factor extrapolation using the scalar "
                    "approximation: theory, applications and limitations", "Acta Cryst. D",
                    "63", "1029-1041", 2007, "10.1107/S0907444907038164"),
    "coquelle_2018": ("Coquelle N, Sliwa M, Woodhouse J, et al",
                      "Chromophore twisting in the excited state of a photoswitchable "
                      "fluorescent protein captured by time-resolved serial femtosecond "
                      "crystallography", "Nat. Chem.", "10", "31-37", 2018,
                      "10.1038/nchem.2853"),
}

#: Papers each program rests on.
PROGRAM_PAPERS = {
    "diffmap": ("meteor", "rof", "beck_teboulle", "french_wilson", "read_1986"),
    "phaseboost": ("meteor", "rof", "beck_teboulle", "french_wilson", "read_1986"),
    "local_scale": ("occupy",),
    "sharpen": ("terwilliger_2018",),
    # the extrapolation, on meteor.diffmap's k-weighted, TV-denoised difference
    "extrapolate": ("genick_2007", "coquelle_2018", "meteor", "rof", "beck_teboulle",
                    "french_wilson", "read_1986"),
}


def citation_phil(program: str) -> libtbx.phil.scope:
    """The citations of ``program`` as a libtbx citation PHIL scope (ProgramTemplate's
    ``citations`` attribute, shown by ``--citations``)."""
    blocks = []
    for article_id in PROGRAM_PAPERS[program]:
        authors, title, journal, volume, pages, year, doi = PAPERS[article_id]
        fields = {"article_id": article_id, "authors": authors, "title": title,
                  "journal": journal, "volume": volume, "pages": pages, "year": year,
                  "doi_id": doi}
        body = "\n".join(f"  {k} = {v!r}" if isinstance(v, str) else f"  {k} = {v}"
                         for k, v in fields.items() if v is not None)
        blocks.append(f"citation {{\n{body}\n}}")
    return master_citation_phil.fetch(source=libtbx.phil.parse("\n".join(blocks)))


def citation_lines(article_ids) -> list[str]:
    """One line per paper: authors (year) title. journal volume, pages. doi."""
    lines = []
    for article_id in article_ids:
        authors, title, journal, volume, pages, year, doi = PAPERS[article_id]
        where = ", ".join(p for p in (f"{journal} {volume or ''}".strip(), pages) if p)
        lines.append(f"{authors} ({year}). {title}. {where}. doi:{doi}")
    return lines
