"""vinv's runtime: the parameter space, our wavetable bank, preset I/O, rendering, resynthesis,
conversion, batch, watch and the report page.

Imports numpy, onnxruntime, soundfile, soxr, vita, watchdog, platformdirs and cma (pycma, pure
Python, for the search) only: never torch.
"""

__version__ = "0.1.0"
