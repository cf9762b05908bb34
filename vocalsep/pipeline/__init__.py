"""The signal path, numpy only: what is decided once (:mod:`.plan`), the streaming STFT
(:mod:`.stft`), bands and segments (:mod:`.bands`) and the stream itself (:mod:`.stream`)."""
