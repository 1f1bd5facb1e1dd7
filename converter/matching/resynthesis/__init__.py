"""Resynthesis: a Vital patch built from the input itself (its harmonics and residual as wavetables
swept in time, its pitch track as modulation). ``analyse_for_resynthesis`` measures the sound;
``resynthesis_preset`` turns the measurement into a playable preset, ``residual_variants`` says which
of its knob settings are worth trying too, and ``correct_resynthesis`` corrects its tables by what
Vital plays of them."""

from converter.matching.resynthesis.analysis import Resynthesis, analyse_for_resynthesis
from converter.matching.resynthesis.correction import correct_resynthesis
from converter.matching.resynthesis.patch import residual_variants, resynthesis_preset

__all__ = ["Resynthesis", "analyse_for_resynthesis", "correct_resynthesis", "residual_variants", "resynthesis_preset"]
