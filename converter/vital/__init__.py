"""What vinv knows about Vital: the parameter space with its ranges and curves, our wavetable bank,
LFO shapes, preset I/O and rendering through vita."""
