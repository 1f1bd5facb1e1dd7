"""vinv's runtime: the parameter space, our wavetable bank, preset I/O, rendering and conversion.

Imports numpy, onnxruntime, soundfile, soxr, vita, watchdog and platformdirs only: never torch.
"""

__version__ = "0.1.0"
