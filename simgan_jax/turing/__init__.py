"""The visual Turing test (SIMGAN.md): do people tell refined images from real ones?

``stats`` (exact binomial tests, Wilson intervals), ``images`` (sets from data
specs), ``study`` (the SQLite database), ``app`` (the Flask app), ``report``
(results as markdown and CSV), ``server`` (what ``launch/turing_test.py`` runs),
``screenshots`` (headless Chromium pictures of the pages).
"""
