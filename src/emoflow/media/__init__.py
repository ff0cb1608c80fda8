"""The media layer: ffmpeg (probe, decode audio, sample frames), the probe cache and the one time
grid."""
