"""Reliability campaign: a generated corpus of bad and odd inputs (:mod:`.corpus`) and the
checks that the command line and the Python API handle each one (:mod:`.campaign`).

``python -m vocalsep.reliability run [--full]`` runs it and prints the table of
docs/reliability.md.
"""
