"""Device emulators that speak the real protocols on real ptys (or a real pymodbus server), with
fault injection: dropped bytes, corrupted checksums, a device that stops answering, added latency,
a port that vanishes and comes back."""
