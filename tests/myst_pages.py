"""Made-up book pages for the tests: the front matter every jupytext MyST page of the book starts with, so a test
writes only the page's body."""

FRONT_MATTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def myst_page(body: str) -> str:
    """A jupytext MyST page (what `node-transfer notebooks` and the book read) with this body."""
    return FRONT_MATTER + "\n" + body
