"""The report page a person reads: ``vinv-report.html`` with pictures and players for every conversion.

- ``records``: what one conversion leaves for the page (a small JSON file per input under the page's
  hidden ``.vinv/`` folder), written by the worker that converted it;
- ``pictures``: the input's and the preview's spectrograms with loudness curves, as PNGs (numpy),
  made once per conversion in the worker;
- ``page``: the HTML page built from the records (no numpy: the idle watch daemon writes it).
"""
