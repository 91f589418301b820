"""Video decoding with ffmpeg and the HDF5 frame store."""
