"""vocalsep: isolate the singing voice from music."""
__version__ = "0.1.0"
