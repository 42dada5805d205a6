"""fsvid: few-shot video classification, TRX, STRM, MASTAF and a prototype baseline."""

__version__ = "0.1.0"
