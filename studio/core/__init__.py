"""The studio's own rules, free of torch and Qt: requests, settings, paths, errors, jobs
and results, schedulers' names, imaging, saving, restoring, and the draft the window edits.

The command line, the engine and the window all go through these; an import contract
(tests/test_import_contracts.py) keeps torch and Qt out.
"""
