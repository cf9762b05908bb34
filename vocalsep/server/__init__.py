"""``vocalsep serve``: a web page and a JSON API for separating songs (issue #5).

:mod:`.app` builds the FastAPI app (:func:`create_app`), :mod:`.jobs` keeps the jobs on disk
and runs them on a bounded pool of worker threads, :mod:`.upload` streams uploads to disk
under a size limit, :mod:`.spectrograms` draws the result images, ``static/`` holds the page.
Needs the ``web`` extra (``pip install -e ".[web]"``).
"""
