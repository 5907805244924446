"""The book's own layer: what each results chapter states, shows and glues, computed from the committed results
by the `analysis` engine (statistics, claims, verdicts, findings) below it.

`PAGES` maps each chapter (its file under `book/`) to the module that serves it; a page loads its module, calls it
and shows what it returns, in short cells. A new chapter is its module here, its page, one line in `PAGES` and one
in `_toc.yml`. The other modules are the pieces those share: `first_screen`, `forest`, `verdict_grid` and `compact`
(the answer's tables and figures), `seeds`, `overfit_facts` and `epoch_cost` (facts several chapters state).
"""

#: Results chapter (book/NAME.md) -> the module of this package that serves it; each module's `page_facts(results)`
#: gives every name the chapter glues from a loop over its facts (`tests/test_pages.py`).
PAGES = {
    "intro": "answer",
    "reproducing": "chapter_facts",
    "harder": "extensions",
    "beyond": "sweeps",
    "performance": "bench_results",
    "glossary": "glossary",
}
