"""Class maps of large scenes: tiles read by window, classified in batches, blended, written strip by strip."""
